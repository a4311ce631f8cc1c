"""The course around the package (floors: faces and choosing).

- choosing: ``profiles`` (``offline`` | ``gpu`` → a model id per role, device, dtype), ``registry`` (every model
  id the course names, its family, mirrors for withdrawn repos, gated-repo hints, the token lookup), ``paths``
  (where the repository keeps weeks, data and models; ``COURSE_ROOT`` overrides); ``colab`` (every notebook's
  setup cell and what it calls on Colab: install what Colab lacks in the running kernel; standard library only);
  ``exercises`` (each week notebook's "Your turn" cell and the instructor's answer key, from ``exercises/NN_*.yml``);
- faces: ``run`` (the papermill runner; ``parameters`` reads each notebook parameter's type and range so that a bad
  ``-p`` is refused before a kernel starts), ``grade`` (otter assign, and grading a class: ``otter_run`` grades one
  submission in a process of its own, ``gradebook`` writes the scores and the feedback), ``cli``
  (``diffusion-course``, one subcommand per face).

``profiles``, ``registry`` and ``paths`` may be imported from anywhere above ``sampling``; the faces by nobody.
"""
