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

find_package(Torch REQUIRED)
# Torch's exported flags carry -D_GLIBCXX_USE_CXX11_ABI and include paths; link through one target.
add_library(cdl_torch INTERFACE)
target_link_libraries(cdl_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(cdl_torch INTERFACE ${TORCH_CXX_FLAGS})

find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)

if(CDL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
