"""Execute a week notebook through papermill the way ``make run`` does (this interpreter, ``MPLBACKEND=Agg``), for
the tests that run a notebook on a code path its committed outputs do not show (the ``gpu`` profile pointed at a
tiny random-weight pipeline on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def execute_notebook(
    notebook: Path, parameters: dict[str, Any], tmp_path: Path, *, timeout: int = 300
) -> tuple[str, list[dict]]:
    """Run ``notebook`` with ``parameters`` injected (``timeout`` seconds per cell); fail on the first failing cell or
    any error output.

    Returns:
        the text of every stream output, and the outputs holding an ``image/png``.
    """
    import nbformat
    import papermill

    from course_utils.course.run import RunnerKernelManager

    output = tmp_path / notebook.name
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        language="python",
        cwd=str(notebook.parent),
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout,
        kernel_manager_class=RunnerKernelManager,
    )  # raises PapermillExecutionError on the first failing cell
    nb = nbformat.read(output, as_version=4)
    outputs = [out for cell in nb.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    text = "".join(out.get("text", "") for out in outputs)
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    return text, images
