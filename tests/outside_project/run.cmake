# ctest: install shmpool into a fresh prefix, build the outside project
# against it with find_package, and run it.
file(REMOVE_RECURSE ${PREFIX} ${WORK})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} COMMAND_ERROR_IS_FATAL ANY
                OUTPUT_QUIET)
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK} -G Ninja -DCMAKE_PREFIX_PATH=${PREFIX}
                        -DCMAKE_BUILD_TYPE=Release COMMAND_ERROR_IS_FATAL ANY OUTPUT_QUIET)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK} COMMAND_ERROR_IS_FATAL ANY OUTPUT_QUIET)
# Run from an empty directory, with no PYTHONPATH: the package must be found
# through the installed CMake package alone.
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=PYTHONPATH ${WORK}/outside_app
                WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "outside_app failed (${rc})")
endif()
if(NOT out MATCHES "reply \\{\"pong\":true\\} from the installed package at ${PREFIX}")
  message(FATAL_ERROR "unexpected output")
endif()
if(NOT out MATCHES "1048576 bytes echoed in place")
  message(FATAL_ERROR "the payload arena did not work from the installed package")
endif()
# The command and the headers a user needs are installed too.
execute_process(COMMAND ${PREFIX}/bin/shmpool --help RESULT_VARIABLE rc OUTPUT_VARIABLE help)
if(NOT rc EQUAL 0 OR NOT help MATCHES "serve")
  message(FATAL_ERROR "installed shmpool command does not run (${rc})")
endif()
foreach(f include/shmpool/pool.h include/shmpool/payload.h include/shmpool/client.h
          include/shmpool/schema/envelope_generated.h)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
