# cdl_model_file: the .cdlm format, canonical order and its report, without LibTorch, so that the
# fuzz build (cmake/CdlFuzz.cmake) links exactly what cdl-model reads files with.
add_library(cdl_model_file STATIC ${CMAKE_CURRENT_LIST_DIR}/model_file.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/model_canonical.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/model_report.cc)
target_include_directories(cdl_model_file PUBLIC ${CDL_INCLUDE_DIRS})
target_link_libraries(cdl_model_file PUBLIC cdl_kernels nlohmann_json::nlohmann_json)
