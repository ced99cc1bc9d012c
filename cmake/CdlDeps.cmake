# Finds the dependencies, all from Debian packages (scripts/install-deps.sh): those of the
# libraries (cdlDependencies.cmake, shared with the installed package), then those of the programs,
# benchmarks and tests.
include(cdlDependencies)

find_package(zstd CONFIG QUIET)
if(TARGET zstd::libzstd_shared)
  add_library(cdl::zstd ALIAS zstd::libzstd_shared)
else()
  pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
  add_library(cdl::zstd ALIAS PkgConfig::ZSTD)
endif()

include(CdlTorch)

find_package(CLI11 CONFIG REQUIRED)

if(CDL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
