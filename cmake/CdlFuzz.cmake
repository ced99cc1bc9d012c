# The fuzz build (CDL_FUZZ=ON, clang): payload decoding under libFuzzer with ASan and UBSan. It
# compiles only what decoding needs (kernels and the codecs), so it needs neither LibTorch nor MPI.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CDL_FUZZ needs clang (CC=clang CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
endif()
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

set(CDL_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)
file(GLOB CDL_FUZZ_SOURCES CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/kernels/*.cc
     ${PROJECT_SOURCE_DIR}/comm/codec*.cc
     ${PROJECT_SOURCE_DIR}/comm/wire.cc)
add_library(cdl_fuzz_codecs STATIC ${CDL_FUZZ_SOURCES})
target_include_directories(cdl_fuzz_codecs PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(cdl_fuzz_codecs PUBLIC ${CDL_SANITIZE} -fsanitize=fuzzer-no-link)
target_link_options(cdl_fuzz_codecs PUBLIC -fsanitize=address,undefined)
target_link_libraries(cdl_fuzz_codecs PUBLIC PkgConfig::XXHASH Threads::Threads)

add_executable(payload_fuzz ${PROJECT_SOURCE_DIR}/tests/fuzz/payload_fuzz.cc)
target_link_libraries(payload_fuzz PRIVATE cdl_fuzz_codecs)
target_link_options(payload_fuzz PRIVATE -fsanitize=fuzzer)

add_executable(make_fuzz_seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/make_seeds.cc)
target_link_libraries(make_fuzz_seeds PRIVATE cdl_fuzz_codecs)
