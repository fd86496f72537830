# Finds LibTorch for torchd, in the order the README documents:
#   1. LIBTORCH (CMake variable or environment): the root of an unpacked LibTorch / PyTorch install
#   2. Torch_DIR or CMAKE_PREFIX_PATH (variable or environment) as set by the user
#   3. the cmake prefix of an importable Python `torch` (TORCHD_PYTHON, python3 on PATH, /usr/bin/python3),
#      used only when a TorchConfig.cmake really sits there (Debian's python3-torch points at a folder without one)
#   4. the system install (Debian/Ubuntu `libtorch-dev`)
# On success: the `torch` target and TORCH_LIBRARIES exist, TORCHD_TORCH_SOURCE says which step found it,
# and TORCHD_WITH_CUDA is ON when this LibTorch carries CUDA (torch_cuda / c10_cuda).

set(_torchd_tried "")

function(_torchd_try_prefix prefix how)
  foreach(sub "share/cmake/Torch" "lib/cmake/Torch" "")
    if(EXISTS "${prefix}/${sub}/TorchConfig.cmake")
      set(TORCHD_TORCH_CANDIDATE "${prefix}/${sub}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(_torchd_tried "${_torchd_tried}\n  - ${how}: ${prefix} (no TorchConfig.cmake there)" PARENT_SCOPE)
endfunction()

set(TORCHD_TORCH_CANDIDATE "")
if(NOT LIBTORCH AND DEFINED ENV{LIBTORCH})
  set(LIBTORCH "$ENV{LIBTORCH}")
endif()

if(LIBTORCH)
  _torchd_try_prefix("${LIBTORCH}" "LIBTORCH")
  if(NOT TORCHD_TORCH_CANDIDATE)
    message(FATAL_ERROR "torchd: LIBTORCH=${LIBTORCH} holds no share/cmake/Torch/TorchConfig.cmake. "
      "Point LIBTORCH at the root of an unpacked LibTorch (the folder with lib/ and share/).")
  endif()
  find_package(Torch REQUIRED PATHS "${TORCHD_TORCH_CANDIDATE}" NO_DEFAULT_PATH)
  set(TORCHD_TORCH_SOURCE "LIBTORCH=${LIBTORCH}")
endif()

if(NOT Torch_FOUND AND (Torch_DIR OR CMAKE_PREFIX_PATH OR DEFINED ENV{Torch_DIR} OR DEFINED ENV{CMAKE_PREFIX_PATH}))
  find_package(Torch QUIET)
  if(Torch_FOUND)
    set(TORCHD_TORCH_SOURCE "Torch_DIR/CMAKE_PREFIX_PATH (${Torch_DIR})")
  else()
    set(_torchd_tried "${_torchd_tried}\n  - Torch_DIR/CMAKE_PREFIX_PATH: ${Torch_DIR} ${CMAKE_PREFIX_PATH} $ENV{CMAKE_PREFIX_PATH}")
  endif()
endif()

if(NOT Torch_FOUND)
  set(_pythons "")
  if(TORCHD_PYTHON)
    list(APPEND _pythons "${TORCHD_PYTHON}")
  elseif(DEFINED ENV{TORCHD_PYTHON})
    list(APPEND _pythons "$ENV{TORCHD_PYTHON}")
  endif()
  find_program(_torchd_path_python3 NAMES python3 NO_CACHE)
  if(_torchd_path_python3)
    list(APPEND _pythons "${_torchd_path_python3}")
  endif()
  list(APPEND _pythons "/usr/bin/python3")
  list(REMOVE_DUPLICATES _pythons)
  foreach(py IN LISTS _pythons)
    if(NOT EXISTS "${py}" OR Torch_FOUND)
      continue()
    endif()
    execute_process(COMMAND "${py}" -c "import torch; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0 OR NOT _prefix)
      set(_torchd_tried "${_torchd_tried}\n  - ${py}: cannot import torch")
      continue()
    endif()
    if(EXISTS "${_prefix}/Torch/TorchConfig.cmake")
      find_package(Torch QUIET PATHS "${_prefix}/Torch" NO_DEFAULT_PATH)
      if(Torch_FOUND)
        set(TORCHD_TORCH_SOURCE "python torch (${py}: ${_prefix})")
      endif()
    else()
      set(_torchd_tried "${_torchd_tried}\n  - ${py}: torch.utils.cmake_prefix_path=${_prefix} (no Torch/TorchConfig.cmake there)")
    endif()
  endforeach()
endif()

if(NOT Torch_FOUND)
  find_package(Torch QUIET)
  if(Torch_FOUND)
    set(TORCHD_TORCH_SOURCE "system (${Torch_DIR})")
  else()
    set(_torchd_tried "${_torchd_tried}\n  - system find_package(Torch): not found")
  endif()
endif()

if(NOT Torch_FOUND)
  message(FATAL_ERROR "torchd: LibTorch not found. Tried:${_torchd_tried}\n"
    "Fix it with one of:\n"
    "  sudo apt-get install libtorch-dev            (Debian/Ubuntu CPU LibTorch)\n"
    "  LIBTORCH=/path/to/libtorch npm run build:native   (an unpacked LibTorch or PyTorch install)")
endif()

if(TARGET torch_cuda OR C10_CUDA_LIBRARY)
  set(TORCHD_WITH_CUDA ON)
else()
  set(TORCHD_WITH_CUDA OFF)
endif()
message(STATUS "torchd: LibTorch ${Torch_VERSION} from ${TORCHD_TORCH_SOURCE}; CUDA: ${TORCHD_WITH_CUDA}")
