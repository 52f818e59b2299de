"""The fast kernels behind ``convprop.ops``: each computes one of the notes' sums another way.

* ``im2col``: windows copied into GEMM columns and added back (col2im), compiled loops;
* ``conv_gemm``: convolution as im2col and one matrix product per sample and group, and its
  adjoint form for the input gradient;
* ``winograd``: Winograd's F(4x4, 3x3) for 3x3 stride-1 layers;
* ``batch_norm``: batch norm's statistics, normalisation and backward, one read of the map each;
* ``relu``: ReLU in blocks of samples, its backward as one compiled pass;
* ``cross_entropy``: cross-entropy of class indices without the one-hot array;
* ``interpolate``: nearest upscaling as a broadcast copy, the adjoint of a gather as products;
* ``pooling``: max and mean pooling one kernel tap at a time, on blocks of maps;
* ``adaptive_pooling``: adaptive mean as averaging matrices, adaptive max by max pooling's
  tap loop, along rows of tiles or one axis at a time;
* ``parallel``: blocks of samples on every core, each product on one BLAS thread;
* ``compiled``: numba for the loops NumPy can only make one pass at a time;
* ``memory``: glibc's malloc thresholds, for training processes (not set by importing).

Which kernel runs is decided by each op family's plan (``convprop.ops.conv.plan_forward``,
``pooling.plan_max_pool``, ``normalization.plan_batch_norm``, ...), and
``convprop.ops.use_algorithm("reference")`` bypasses them all.
What each kernel gains, measured, is in BENCHMARKS.md ("Kernels").
"""
