# The fuzz build (CDL_FUZZ=ON, clang): payload decoding under libFuzzer with ASan and UBSan. It
# builds the kernels and the codec layer (comm/codec, the cdl_codec target) with the sanitizers and
# links the fuzz target against exactly that target, so no codec file escapes fuzzing. It needs
# neither LibTorch nor MPI.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CDL_FUZZ needs clang (CC=clang CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
endif()
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
add_library(cdl::xxhash ALIAS PkgConfig::XXHASH)

set(CDL_CUDA_ENABLED OFF)
add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g -O1 -fsanitize=fuzzer-no-link)
add_link_options(-fsanitize=address,undefined)
add_subdirectory(${PROJECT_SOURCE_DIR}/kernels ${CMAKE_BINARY_DIR}/kernels)
add_subdirectory(${PROJECT_SOURCE_DIR}/comm/codec ${CMAKE_BINARY_DIR}/comm/codec)
find_package(nlohmann_json CONFIG REQUIRED)
include(${PROJECT_SOURCE_DIR}/core/model_file.cmake)

add_executable(payload_fuzz ${PROJECT_SOURCE_DIR}/tests/fuzz/payload_fuzz.cc)
target_link_libraries(payload_fuzz PRIVATE cdl_codec)
target_link_options(payload_fuzz PRIVATE -fsanitize=fuzzer)

add_executable(make_fuzz_seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/make_seeds.cc)
target_link_libraries(make_fuzz_seeds PRIVATE cdl_codec)

# The coded model file reader (Note [Coded model file]): the same, over cdl_model_file.
add_executable(model_file_fuzz ${PROJECT_SOURCE_DIR}/tests/fuzz/model_file_fuzz.cc)
target_link_libraries(model_file_fuzz PRIVATE cdl_model_file)
target_link_options(model_file_fuzz PRIVATE -fsanitize=fuzzer)

add_executable(make_model_seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/make_model_seeds.cc)
target_link_libraries(make_model_seeds PRIVATE cdl_model_file)
