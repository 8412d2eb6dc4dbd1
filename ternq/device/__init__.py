"""From a trained student (any weight format) to a microcontroller: C99 export, integer-only inference,
toolchains, and what a model costs on a board.

- :mod:`ternq.device.c99`: the C library (``ternq_model.h/.c``), ``golden.h`` and the ``main.c`` harness;
- :mod:`ternq.device.fixed`: the Q formats and the integer model (run by :mod:`ternq.kernels.infer_int`);
- :mod:`ternq.device.toolchain`: host ``cc``, ``arm-none-eabi-gcc``, ``qemu-system-arm``, sizes, callgrind,
  instructions counted on the emulated board;
- :mod:`ternq.device.export`: writing an export, and :func:`ternq.device.export.budget` (flash, RAM and
  instructions per step on a board).
"""
