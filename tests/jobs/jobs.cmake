# The batch jobs under a real Slurm (included from tests/CMakeLists.txt): a private Slurm
# on this machine (tests/jobs/slurm_local.sh, as root; Slurm installed on demand with
# scripts/setup-deps.sh --with-slurm), the four chained jobs of jobs/submit.sh on the tiny
# configuration, one USR1 + requeue, and the numbers against a direct run. Skipped (77)
# where Slurm cannot be installed or started.
if(TARGET mp_preprocess)
  add_test(NAME test_slurm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/test_slurm.sh
           $<TARGET_FILE:mammopatch> ${MPIEXEC_EXECUTABLE} ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_slurm PROPERTIES ENVIRONMENT "${MP_TEST_ENV}" TIMEOUT 1200
                       LABELS "jobs;slurm" SKIP_RETURN_CODE 77)
endif()
