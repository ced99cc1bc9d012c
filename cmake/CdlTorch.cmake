# LibTorch through one target: Torch's exported flags carry -D_GLIBCXX_USE_CXX11_ABI and include
# paths. Shared by the main build (CdlDeps) and the fuzz build (CdlFuzz).
find_package(Torch REQUIRED)
add_library(cdl_torch INTERFACE)
target_link_libraries(cdl_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(cdl_torch INTERFACE ${TORCH_CXX_FLAGS})
