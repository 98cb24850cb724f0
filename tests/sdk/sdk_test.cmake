# SPDX-License-Identifier: Apache-2.0
# cmake -P script behind the sdk.out_of_tree_plugin test (see CMakeLists.txt). Fails on the
# first step that fails, printing that step's output.
cmake_minimum_required(VERSION 3.18)

function(step what)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
    endif()
    message(STATUS "${what}: ok")
endfunction()

# docs/plugins.md quotes the example files verbatim: the guide shows what this test builds.
foreach(f every_nth.c CMakeLists.txt)
    file(READ ${EXAMPLE_DIR}/${f} text)
    file(READ ${DOC} doc)
    string(FIND "${doc}" "${text}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "docs/plugins.md does not quote docs/examples/plugin/${f} verbatim")
    endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
step("install the gateway into ${prefix}" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# What find_package needs is there.
file(GLOB_RECURSE config_files ${prefix}/*/EdgeGatewayConfig.cmake)
if(NOT config_files)
    message(FATAL_ERROR "no EdgeGatewayConfig.cmake under ${prefix}")
endif()

# The example exactly as docs/plugins.md tells a stranger to build it (a fresh configure, no
# cache from this build, only the install prefix).
step("configure the example" ${CMAKE_COMMAND} -S ${EXAMPLE_DIR} -B ${WORK_DIR}/build
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release)
step("build the example" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
set(so ${WORK_DIR}/build/plugins/every-nth.so)
if(NOT EXISTS ${so})
    message(FATAL_ERROR "the example did not produce ${so}")
endif()
step("install the example" ${CMAKE_COMMAND} --install ${WORK_DIR}/build --prefix ${WORK_DIR}/plugin-prefix)
if(NOT EXISTS ${WORK_DIR}/plugin-prefix/lib/edge-gateway/plugins/every-nth.so)
    message(FATAL_ERROR "every-nth.so was not installed to <prefix>/lib/edge-gateway/plugins")
endif()
# The gateway's own plugins went where its default plugins.dirs looks (under /usr).
foreach(p window-stats deadband threshold-alert)
    if(NOT EXISTS ${prefix}/lib/edge-gateway/plugins/${p}.so)
        message(FATAL_ERROR "${p}.so was not installed to <prefix>/lib/edge-gateway/plugins")
    endif()
endforeach()
file(GLOB fixtures ${prefix}/lib/edge-gateway/plugins/egw_fx_*)
if(fixtures)
    message(FATAL_ERROR "test fixture plugins were installed: ${fixtures}")
endif()

step("load and drive the example plugin" ${PROBE} ${so})
