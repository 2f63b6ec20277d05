# The regression gate end to end (ctest: example_throughput_regression):
#   two normal runs pass the gate; a run whose handler sleeps fails it.
# -DBENCH=<bench exe> -DSHMPOOL=<shmpool exe> -DHANDLERS=<handlers.py> -DWORK=<dir>
file(MAKE_DIRECTORY ${WORK})
set(flags --benchmark_min_time=0.05 --benchmark_repetitions=3 --benchmark_out_format=json)

function(run_bench out)
  execute_process(COMMAND ${ARGN} ${BENCH} ${HANDLERS} ${flags} --benchmark_out=${WORK}/${out}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "benchmark run ${out} failed (${rc}):\n${log}")
  endif()
endfunction()

# 300%: with other jobs on the same 2 cores (fuzzers beside ctest -j2), two
# identical runs once differed by more than 100% in their ratio to the ping
# baseline; the slowed run is about 60x.
function(gate old new expect)
  execute_process(COMMAND ${SHMPOOL} bench compare ${WORK}/${old} ${WORK}/${new}
                          --baseline BM_Ping --max-regression 300%
                  RESULT_VARIABLE rc OUTPUT_VARIABLE report ERROR_VARIABLE report)
  message("shmpool bench compare ${old} ${new} -> exit ${rc}\n${report}")
  if(NOT rc EQUAL expect)
    message(FATAL_ERROR "expected exit ${expect} from the gate, got ${rc}")
  endif()
endfunction()

run_bench(before.json)
run_bench(after.json)
gate(before.json after.json 0)
# The deliberately slowed build: 2 ms of sleep per call in the handler.
run_bench(slowed.json ${CMAKE_COMMAND} -E env SHMPOOL_EXAMPLE_SLOWDOWN_MS=2)
gate(before.json slowed.json 1)
