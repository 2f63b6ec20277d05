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
