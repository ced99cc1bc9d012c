# cdl_config: the experiment configuration (yaml-cpp and the codec layer's spec parser, no
# LibTorch: the launcher reads and checks configs without it). cdl_data: data sets and sampling
# (no LibTorch either). cdl_checkpoint: checkpoints and the atomic file writes under them.
find_package(yaml-cpp REQUIRED)
find_package(ZLIB REQUIRED)

add_library(cdl_config STATIC ${CMAKE_CURRENT_LIST_DIR}/config.cc)
target_include_directories(cdl_config PUBLIC ${CDL_INCLUDE_DIRS})
target_link_libraries(cdl_config PUBLIC cdl_codec cdl_kernels yaml-cpp)

add_library(cdl_data STATIC ${CMAKE_CURRENT_LIST_DIR}/data.cc)
target_include_directories(cdl_data PUBLIC ${CDL_INCLUDE_DIRS})
target_link_libraries(cdl_data PUBLIC cdl_kernels ZLIB::ZLIB)

add_library(cdl_checkpoint STATIC ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/files.cc)
target_include_directories(cdl_checkpoint PUBLIC ${CDL_INCLUDE_DIRS})
target_link_libraries(cdl_checkpoint PUBLIC cdl_kernels cdl_torch)
