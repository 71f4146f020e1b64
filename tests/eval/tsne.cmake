# t-SNE (eval/mp_tsne.c) against scikit-learn's exact t-SNE: P, the optimiser step by step,
# the maps' KL, trustworthiness and cluster separation, determinism, errors.  Included
# from tests/CMakeLists.txt (the tests/ directory scope).
add_executable(tsne_tool ${CMAKE_CURRENT_SOURCE_DIR}/eval/tsne_tool.c)
target_link_libraries(tsne_tool PRIVATE mp_eval mp_core)
# the same tool on its own copy of mp_tsne.c with the q floor raised from DBL_EPSILON to
# 1e-3, so that the floored gradient/KL path (unreachable for real layouts) is compared
# with scikit-learn run with the same floor
add_executable(tsne_tool_qfloor ${CMAKE_CURRENT_SOURCE_DIR}/eval/tsne_tool.c
                                ${CMAKE_CURRENT_SOURCE_DIR}/../eval/mp_tsne.c)
target_include_directories(tsne_tool_qfloor PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/../eval)
target_compile_definitions(tsne_tool_qfloor PRIVATE MP_TSNE_Q_FLOOR=1e-3)
target_compile_options(tsne_tool_qfloor PRIVATE -Wno-unknown-pragmas)
target_link_libraries(tsne_tool_qfloor PRIVATE mp_core m)
add_test(NAME test_tsne
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/eval/check_tsne.py
                 $<TARGET_FILE:tsne_tool> $<TARGET_FILE:tsne_tool_qfloor>)
set_tests_properties(test_tsne PROPERTIES TIMEOUT 300 LABELS "eval")
