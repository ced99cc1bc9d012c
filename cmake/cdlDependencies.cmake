# The packages cdl's libraries link against (LibTorch aside: Note [LibTorch]), found the same way
# by cdl's own build (cmake/CdlDeps.cmake) and by a project that uses the installed package
# (cdlConfig.cmake, where a missing one makes find_package(cdl) fail naming it). Defines
# cdl::xxhash.
include(CMakeFindDependencyMacro)
macro(cdl_require_package)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "cdl")
    find_dependency(${ARGN})
  else()
    find_package(${ARGN} REQUIRED)
  endif()
endmacro()

cdl_require_package(Threads)
cdl_require_package(PkgConfig)
if(NOT DEFINED CDL_WITH_MPI OR CDL_WITH_MPI)
  cdl_require_package(MPI COMPONENTS C)
endif()
cdl_require_package(nlohmann_json CONFIG)
cdl_require_package(spdlog)
cdl_require_package(yaml-cpp)
cdl_require_package(ZLIB)

if(NOT TARGET cdl::xxhash)
  pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
  add_library(cdl::xxhash ALIAS PkgConfig::XXHASH)
endif()
