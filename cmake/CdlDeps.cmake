# Finds the dependencies, all from Debian packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
add_library(cdl::xxhash ALIAS PkgConfig::XXHASH)

find_package(zstd CONFIG QUIET)
if(TARGET zstd::libzstd_shared)
  add_library(cdl::zstd ALIAS zstd::libzstd_shared)
else()
  pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
  add_library(cdl::zstd ALIAS PkgConfig::ZSTD)
endif()

find_package(MPI REQUIRED COMPONENTS C)

include(CdlTorch)

find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)

if(CDL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
