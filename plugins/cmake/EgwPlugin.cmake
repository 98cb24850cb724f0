# SPDX-License-Identifier: Apache-2.0
#
# egw_add_plugin(NAME [NO_INSTALL] [DESTINATION dir] SOURCES...)
#
# Builds an edge-gateway plugin: a MODULE library named exactly NAME.so (no "lib" prefix, so the
# gateway finds it as NAME.so in its plugin dirs and a route can name it "NAME"), compiled with
# hidden visibility so that the only exported symbol is egw_plugin_entry (EGW_EXPORT in
# plugin.h). The library is written to ${CMAKE_BINARY_DIR}/plugins/ and, unless NO_INSTALL is
# given, installed to DESTINATION (default ${EGW_PLUGIN_INSTALL_DIR}, lib/edge-gateway/plugins).
#
# The same file serves the gateway's own build (it links egw::plugin_abi, the header in the source
# tree) and out-of-tree authors through find_package(EdgeGateway) (it links EdgeGateway::plugin,
# the installed header). Plugins may be C or C++; a C++ plugin must catch its exceptions itself.
include_guard(GLOBAL)
include(GNUInstallDirs)

# Where plugins install, relative to the prefix: lib/edge-gateway/plugins, so that under /usr they
# land in /usr/lib/edge-gateway/plugins, the default of the gateway's plugins.dirs and the folder
# the .deb creates. Not ${CMAKE_INSTALL_LIBDIR}: on Debian that is lib/<multiarch> under /usr, where
# the gateway would not look.
set(EGW_PLUGIN_INSTALL_DIR "lib/edge-gateway/plugins"
    CACHE STRING "Install folder of plugins, relative to CMAKE_INSTALL_PREFIX")

function(egw_add_plugin NAME)
    cmake_parse_arguments(PARSE_ARGV 1 arg "NO_INSTALL" "DESTINATION" "")
    if(NOT arg_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "egw_add_plugin(${NAME}): no sources")
    endif()
    add_library(${NAME} MODULE ${arg_UNPARSED_ARGUMENTS})
    if(TARGET EdgeGateway::plugin)
        target_link_libraries(${NAME} PRIVATE EdgeGateway::plugin)
    elseif(TARGET egw::plugin_abi)
        target_link_libraries(${NAME} PRIVATE egw::plugin_abi)
    else()
        message(FATAL_ERROR "egw_add_plugin(${NAME}): neither EdgeGateway::plugin "
                            "(find_package(EdgeGateway)) nor egw::plugin_abi is defined")
    endif()
    set_target_properties(${NAME} PROPERTIES
        PREFIX ""
        OUTPUT_NAME ${NAME}
        C_VISIBILITY_PRESET hidden
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugins)
    # A plugin is loaded with RTLD_NOW: an unresolved symbol should fail the link, not the load.
    # The version script also hides the C++ runtime's vague-linkage symbols (typeinfo of std
    # templates) that -fvisibility=hidden leaves exported, so egw_plugin_entry is all there is.
    if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
        set(map ${CMAKE_BINARY_DIR}/egw_plugin.map)
        if(NOT EXISTS ${map})
            file(WRITE ${map} "{ global: egw_plugin_entry; local: *; };\n")
        endif()
        target_link_options(${NAME} PRIVATE "LINKER:--version-script=${map}")
        # Clang's sanitizers (the fuzz build) leave their runtime to the executable that loads
        # the plugin, so there an unresolved symbol is expected.
        if(NOT EGW_FUZZ)
            target_link_options(${NAME} PRIVATE "LINKER:--no-undefined")
        endif()
        set_property(TARGET ${NAME} APPEND PROPERTY LINK_DEPENDS ${map})
    endif()
    if(NOT arg_NO_INSTALL)
        if(NOT arg_DESTINATION)
            set(arg_DESTINATION ${EGW_PLUGIN_INSTALL_DIR})
        endif()
        install(TARGETS ${NAME} LIBRARY DESTINATION ${arg_DESTINATION})
    endif()
endfunction()
