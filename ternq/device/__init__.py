"""From a trained student to a microcontroller: C99 export, integer-only inference, toolchains.

- :mod:`ternq.device.c99`: the C library (``ternq_model.h/.c``), ``golden.h`` and the ``main.c`` harness;
- :mod:`ternq.device.fixed`: the Q formats and the integer model (run by :mod:`ternq.kernels.infer_int`);
- :mod:`ternq.device.toolchain`: host ``cc``, ``arm-none-eabi-gcc``, ``qemu-system-arm``, sizes, callgrind.
"""
