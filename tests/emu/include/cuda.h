// The CPU CUDA emulator stands in for this CUDA header (tests/emu/cuda_emu.h).
#pragma once
#include "cuda_emu.h"
