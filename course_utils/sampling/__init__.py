"""Sampling: the algorithms of weeks 1–2, written in the papers' notation (floor: algorithms).

Holds the noise schedules (``schedules``), the forward process, x̂₀ and the DDPM / DDIM steps and loops
(``diffusion``), classifier-free guidance, visual anagrams and hybrid images (``guidance``), SDEdit and
inpainting (``editing``), inpainting masks (``masks``), the anagram views (``views``) and radial frequency bands,
settle steps and the signal-to-noise ratio per band (``spectrum``: why coarse structure appears first).

Everything here takes tensors and a denoiser ``eps(x_t, t, cond)`` and knows no model family. It may import
the cross-cutting ``errors`` and ``runtime``, the pure image operations of ``course_utils.data.images``, and
itself; never ``sd``, ``models``, ``course``, ``training``, ``denoisers`` or a face (``tests/test_floors.py``).
"""
