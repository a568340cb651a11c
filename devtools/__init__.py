"""Developer tools of the pack, and the support that tests and benchmarks share.

* ``headless``: ComfyUI in-process (load the pack, convert a UI workflow to an API prompt, run it); ``harness``:
  one host per test or benchmark session with temporary model folders, and small probes of a guider;
* ``tiny_models``, ``tiny_mllm``: tiny real-architecture models and stand-ins (built in seconds, no downloads);
* ``gaussian_reference``: closed-form scores and sampler moments of Gaussian data;
* ``tvp_task``: the miniature text-video prediction task and its metrics (one Frechet distance for all);
* ``build_workflows`` and ``specs_*``: write the templates in ``workflows/`` from the live node definitions;
  ``thumbnails``: their pictures; ``train_adapter``: train adapters of any kind from the command line with Train
  Adapters' code, on one GPU or several; ``launch``: start a module as several local processes (the
  data-parallel tests).

Run the tools from the pack's folder as modules, for example ``python -m devtools.build_workflows``. Tests
(``tests/conftest.py``) and benchmarks (``benchmarks/_root.py``) each put the repository root on ``sys.path``
once; nothing here imports a test or a benchmark.
"""
