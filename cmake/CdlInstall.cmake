# `cmake --install` and the CMake package: find_package(cdl) in another project gives
#   cdl::comm  the communication layer (codecs, communicators, compressed collectives, the Reducer)
#   cdl::core  the worker (configs, data, models, CDL layers, trainer, checkpoints, model files)
# and the layers under them (cdl::kernels, cdl::codec, cdl::transport, cdl::reduce, ...), with
# cdl's headers under include/cdl and its programs under bin. examples/custom_model uses it.
include(CMakePackageConfigHelpers)

add_library(cdl_comm INTERFACE)
target_link_libraries(cdl_comm INTERFACE cdl_reduce)
add_library(cdl::comm ALIAS cdl_comm)
add_library(cdl::core ALIAS cdl_core)

set(_cdl_libraries cdl_base cdl_kernels cdl_codec cdl_transport cdl_scheme_spec cdl_reduce cdl_comm
                   cdl_torch)
foreach(room ${CDL_CORE_ROOMS})
  get_directory_property(_room_targets DIRECTORY ${PROJECT_SOURCE_DIR}/core/${room}
                         BUILDSYSTEM_TARGETS)
  foreach(target ${_room_targets})
    get_target_property(_type ${target} TYPE)
    if(_type STREQUAL "STATIC_LIBRARY")
      list(APPEND _cdl_libraries ${target})
    endif()
  endforeach()
endforeach()
list(APPEND _cdl_libraries cdl_core)
foreach(lib ${_cdl_libraries})
  string(REGEX REPLACE "^cdl_" "" name ${lib})
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${name})
endforeach()
install(TARGETS ${_cdl_libraries} EXPORT cdlTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT cdlTargets NAMESPACE cdl:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cdl)
install(DIRECTORY kernels comm core DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cdl
        FILES_MATCHING PATTERN "*.h")

foreach(program cdl-train cdl-model cdl-launch cdl-bench cdl-plot)
  if(TARGET ${program})
    install(TARGETS ${program} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
if(CDL_WITH_MPI)
  install(PROGRAMS ${CMAKE_RUNTIME_OUTPUT_DIRECTORY}/cdl-emulate DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(_cdl_package_dir ${CMAKE_BINARY_DIR}/package)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/cdlConfig.cmake.in
                              ${_cdl_package_dir}/cdlConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cdl)
write_basic_package_version_file(${_cdl_package_dir}/cdlConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${_cdl_package_dir}/cdlConfig.cmake ${_cdl_package_dir}/cdlConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/cdlDependencies.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cdl)
