# The fuzz build (CDL_FUZZ=ON, clang): every reader of outside bytes under libFuzzer with ASan and
# UBSan: payloads, coded model files, codec specs, configs, IDX data files and checkpoints. It
# builds the kernels and each reader's own target (cdl_codec, cdl_scheme_spec, and cdl_config,
# cdl_data, cdl_checkpoint and cdl_model_file from their rooms of core/) with the sanitizers and
# links each fuzz target against exactly that target, so no file of a reader escapes fuzzing. Only the checkpoint
# target needs LibTorch (itself not instrumented); none needs MPI.
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
add_subdirectory(${PROJECT_SOURCE_DIR}/comm/reduce ${CMAKE_BINARY_DIR}/comm/reduce)
find_package(nlohmann_json CONFIG REQUIRED)
include(CdlTorch)
# Each room defines its reader first and, in the fuzz build, nothing after it.
foreach(room config data run model_file)
  add_subdirectory(${PROJECT_SOURCE_DIR}/core/${room} ${CMAKE_BINARY_DIR}/core/${room})
endforeach()

# cdl_fuzz_target(NAME LIB [SEEDER]): NAME from tests/fuzz/NAME.cc over LIB, and its seed maker.
function(cdl_fuzz_target name lib)
  add_executable(${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/${name}.cc)
  target_link_libraries(${name} PRIVATE ${lib})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  if(ARGC GREATER 2)
    add_executable(${ARGV2} ${PROJECT_SOURCE_DIR}/tests/fuzz/${ARGV2}.cc)
    target_link_libraries(${ARGV2} PRIVATE ${lib})
  endif()
endfunction()
cdl_fuzz_target(payload_fuzz cdl_codec make_payload_seeds)
cdl_fuzz_target(model_file_fuzz cdl_model_file make_model_seeds)
cdl_fuzz_target(spec_fuzz cdl_scheme_spec)
cdl_fuzz_target(config_fuzz cdl_config)
cdl_fuzz_target(idx_fuzz cdl_data make_idx_seeds)
cdl_fuzz_target(checkpoint_fuzz cdl_checkpoint make_checkpoint_seeds)
