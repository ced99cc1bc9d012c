# LibTorch through one target, cdl_torch. Shared by the main build (CdlDeps) and the fuzz build
# (CdlFuzz).
#
# Note [LibTorch]
# cdl's LibTorch is the one inside the PyTorch wheel that scripts/install-deps.sh puts in a venv
# outside the clone (scripts/torch-venv.sh prints where; CDL_TORCH_VENV chooses). A LibTorch the
# user names wins over it: -DTorch_DIR=<dir of TorchConfig.cmake>, or a CMAKE_PREFIX_PATH entry
# holding share/cmake/Torch (a libtorch zip, another wheel's torch/ folder); Debian's is the last
# resort. One older than 2.0 is refused here, naming its version and folder.
# With the CUDA path on, Torch's own CMake package is loaded, and it links LibTorch's CUDA library.
# Torch's package insists on a CUDA toolkit whenever its LibTorch was built with CUDA (the wheel's
# is), so without the CUDA path cdl_torch names the LibTorch's CPU libraries (torch_cpu, c10) and
# headers itself: a machine with no toolkit still builds the CPU-only cdl from the same wheel.
set(CDL_TORCH_MIN_VERSION 2.0)

if(NOT DEFINED CDL_TORCH_VENV)
  execute_process(COMMAND ${PROJECT_SOURCE_DIR}/scripts/torch-venv.sh
                  OUTPUT_VARIABLE _cdl_venv OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(CDL_TORCH_VENV ${_cdl_venv} CACHE PATH
      "The venv of scripts/install-deps.sh that holds the PyTorch wheel (LibTorch and Python)")
endif()

# The folder of the TorchConfig.cmake to use, in the order Note [LibTorch] gives.
function(cdl_find_torch_config out)
  set(dirs)
  if(Torch_DIR)
    list(APPEND dirs ${Torch_DIR})
  endif()
  string(REPLACE ":" ";" _env_prefixes "$ENV{CMAKE_PREFIX_PATH}")
  foreach(p ${CMAKE_PREFIX_PATH} ${_env_prefixes})
    list(APPEND dirs ${p} ${p}/share/cmake/Torch ${p}/lib/cmake/Torch)
  endforeach()
  file(GLOB _venv_dirs ${CDL_TORCH_VENV}/lib/python3*/site-packages/torch/share/cmake/Torch)
  list(APPEND dirs ${_venv_dirs} /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/Torch
       /usr/local/share/cmake/Torch)
  foreach(d ${dirs})
    if(EXISTS ${d}/TorchConfig.cmake)
      get_filename_component(d ${d} ABSOLUTE)
      set(${out} ${d} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "cdl: no LibTorch found: the venv ${CDL_TORCH_VENV} has none (run "
                      "scripts/install-deps.sh), and no Torch_DIR or CMAKE_PREFIX_PATH names one")
endfunction()

cdl_find_torch_config(CDL_TORCH_DIR)
file(STRINGS ${CDL_TORCH_DIR}/TorchConfigVersion.cmake _cdl_version_line
     REGEX "set\\(PACKAGE_VERSION \"[^\"]+\"\\)")
if(NOT _cdl_version_line MATCHES "\"([^\"]+)\"")
  message(FATAL_ERROR "cdl: the LibTorch at ${CDL_TORCH_DIR} does not say its version "
                      "(no PACKAGE_VERSION in TorchConfigVersion.cmake)")
endif()
set(CDL_TORCH_VERSION ${CMAKE_MATCH_1})
if(CDL_TORCH_VERSION VERSION_LESS CDL_TORCH_MIN_VERSION)
  message(FATAL_ERROR "cdl needs LibTorch ${CDL_TORCH_MIN_VERSION} or newer; found LibTorch "
                      "${CDL_TORCH_VERSION} at ${CDL_TORCH_DIR}. Run scripts/install-deps.sh for "
                      "the venv's, or name another with -DTorch_DIR=<folder of TorchConfig.cmake>.")
endif()
get_filename_component(CDL_TORCH_PREFIX ${CDL_TORCH_DIR}/../../.. ABSOLUTE)
set(_cdl_torch_libdir ${CDL_TORCH_PREFIX}/lib)

# Note [libstdc++ before LibTorch]
# The wheel's libraries carry parts of libstdc++ linked in for older systems (std::filesystem,
# std::chrono's time zones, ...) and export them. A program whose NEEDED list names a LibTorch
# library before libstdc++ has its own calls bound to those copies: std::filesystem::remove_all
# jumped to address 0 in cdl-bench that way. cdl_torch names libstdc++ first, so the system's
# libstdc++ serves the program (and LibTorch) as it serves every other library.
add_library(cdl_torch INTERFACE)
target_link_libraries(cdl_torch INTERFACE stdc++)
if(CDL_CUDA_ENABLED OR NOT EXISTS ${_cdl_torch_libdir}/libtorch_cuda.so)
  set(CDL_TORCH_FROM_PACKAGE ON)
  # Torch's package looks for Caffe2's package and its libraries with PATHS, which come after the
  # system's folders: with its own prefix first, another LibTorch on the system (Debian's) cannot
  # slip in. The wheel links kineto into torch_cpu, where the package looks for a library of its own.
  list(PREPEND CMAKE_PREFIX_PATH ${CDL_TORCH_PREFIX})
  if(NOT EXISTS ${_cdl_torch_libdir}/libkineto.a AND EXISTS ${_cdl_torch_libdir}/libtorch_cpu.so)
    set(kineto_LIBRARY ${_cdl_torch_libdir}/libtorch_cpu.so CACHE FILEPATH "kineto, in torch_cpu")
  endif()
  # It also turns CMAKE_CUDA_ARCHITECTURES off (for its FindCUDA-era flags, which cdl's CUDA
  # targets do not use): cdl's architectures are kept aside and restored.
  set(_cdl_cuda_archs ${CMAKE_CUDA_ARCHITECTURES})
  unset(CMAKE_CUDA_ARCHITECTURES)
  if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND _cdl_cuda_archs)
    string(REGEX REPLACE "([0-9])([0-9]+)" "\\1.\\2" TORCH_CUDA_ARCH_LIST "${_cdl_cuda_archs}")
  endif()
  find_package(Torch CONFIG REQUIRED PATHS ${CDL_TORCH_DIR} NO_DEFAULT_PATH)
  set(CMAKE_CUDA_ARCHITECTURES ${_cdl_cuda_archs})
  list(REMOVE_AT CMAKE_PREFIX_PATH 0)
  target_link_libraries(cdl_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_options(cdl_torch INTERFACE ${TORCH_CXX_FLAGS})
else()
  set(CDL_TORCH_FROM_PACKAGE OFF)
  foreach(lib torch_cpu c10)
    find_library(CDL_TORCH_${lib}_LIBRARY ${lib} PATHS ${_cdl_torch_libdir} NO_DEFAULT_PATH
                 REQUIRED)
    target_link_libraries(cdl_torch INTERFACE ${CDL_TORCH_${lib}_LIBRARY})
  endforeach()
  target_include_directories(cdl_torch SYSTEM INTERFACE
                             ${CDL_TORCH_PREFIX}/include
                             ${CDL_TORCH_PREFIX}/include/torch/csrc/api/include)
endif()

# Note [fmt before LibTorch's]
# LibTorch's include folder carries a copy of fmt (12 in 2.11) that spdlog, built against the
# system's fmt (Debian's 9), cannot compile with. A folder holding only a link to the system's fmt
# goes before LibTorch's folders, so every `#include <fmt/...>` means the fmt spdlog was built with.
if(TARGET fmt::fmt AND EXISTS ${CDL_TORCH_PREFIX}/include/fmt)
  get_target_property(_cdl_fmt_includes fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
  find_path(CDL_FMT_INCLUDE_DIR fmt/format.h HINTS ${_cdl_fmt_includes} REQUIRED)
  set(_cdl_fmt_shim ${CMAKE_BINARY_DIR}/fmt-shim)
  file(MAKE_DIRECTORY ${_cdl_fmt_shim})
  file(CREATE_LINK ${CDL_FMT_INCLUDE_DIR}/fmt ${_cdl_fmt_shim}/fmt SYMBOLIC)
  target_include_directories(cdl_torch SYSTEM BEFORE INTERFACE
                             $<BUILD_INTERFACE:${_cdl_fmt_shim}>
                             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/cdl/fmt-shim>)
  install(DIRECTORY ${_cdl_fmt_shim}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cdl/fmt-shim)
endif()

if(CDL_CUDA_ENABLED)
  set(_cdl_torch_kind "CPU and CUDA")
else()
  set(_cdl_torch_kind "CPU only")
endif()
message(STATUS "cdl: LibTorch ${CDL_TORCH_VERSION} (${_cdl_torch_kind}) at ${CDL_TORCH_PREFIX}")
