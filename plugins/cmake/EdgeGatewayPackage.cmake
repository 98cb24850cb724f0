# SPDX-License-Identifier: Apache-2.0
#
# The installed CMake package for out-of-tree plugins: find_package(EdgeGateway) gives
# EdgeGateway::plugin (the installed header, from the egw_plugin_abi target) and egw_add_plugin().
# Installed to ${CMAKE_INSTALL_LIBDIR}/cmake/EdgeGateway. Included from plugins/CMakeLists.txt
# after egw_plugin_abi is defined and after EgwPlugin.cmake (EGW_PLUGIN_INSTALL_DIR).
include(CMakePackageConfigHelpers)

set(egw_package_dir ${CMAKE_INSTALL_LIBDIR}/cmake/EdgeGateway)

set_target_properties(egw_plugin_abi PROPERTIES EXPORT_NAME plugin)
install(TARGETS egw_plugin_abi EXPORT EdgeGatewayTargets)
install(EXPORT EdgeGatewayTargets NAMESPACE EdgeGateway:: DESTINATION ${egw_package_dir})

configure_package_config_file(
    ${CMAKE_CURRENT_LIST_DIR}/EdgeGatewayConfig.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/EdgeGatewayConfig.cmake
    INSTALL_DESTINATION ${egw_package_dir}
    PATH_VARS CMAKE_INSTALL_INCLUDEDIR EGW_PLUGIN_INSTALL_DIR)
# The ABI major is what a plugin must match, so the package is compatible within a major. The
# package version is the gateway's: 0.x is not a promise of plugin compatibility, the ABI is.
write_basic_package_version_file(
    ${CMAKE_CURRENT_BINARY_DIR}/EdgeGatewayConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMajorVersion)
install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/EdgeGatewayConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/EdgeGatewayConfigVersion.cmake
    ${CMAKE_CURRENT_LIST_DIR}/EgwPlugin.cmake
    DESTINATION ${egw_package_dir})
