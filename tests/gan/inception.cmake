# Inception-v3 (nn/mp_inception) against torchvision's inception_v3 on the same random
# weights, both variants (torchvision blocks; the FID network's pools), through the
# weight converter tools/convert_inception_weights.py; the Inception Score against numpy.
add_executable(inception_tool ${CMAKE_CURRENT_SOURCE_DIR}/gan/inception_tool.c)
target_link_libraries(inception_tool PRIVATE mp_nn mp_core)
# without oneDNN (a GPU node's image) only the ref run is checked: the cpu runs are skipped, said so
set(_inc_no_cpu "")
if(NOT MP_HAVE_DNNL)
  set(_inc_no_cpu --no-cpu)
endif()
add_test(NAME test_inception
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/gan/check_inception.py
                 --tool $<TARGET_FILE:inception_tool> --converter ${CMAKE_SOURCE_DIR}/tools/convert_inception_weights.py
                 ${_inc_no_cpu}
         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_inception PROPERTIES TIMEOUT 900 LABELS "nn;gan" SKIP_RETURN_CODE 77)
