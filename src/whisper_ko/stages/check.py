"""DVC stage `check`, the first of the pipeline: every params section parsed, every output location
checked (the pipeline's own or new, writable), the corpus root and the models' files found, before
any other stage runs. DVC removes a stage's outputs before rerunning it, so a path that names a user's
folder must stop the run here, before DVC reaches that stage. Its output never changes, so a
passing check reruns nothing downstream."""

import json
from pathlib import Path

from whisper_ko import checks, config
from whisper_ko.cli import stage

SECTIONS = ("discover", "text", "preprocess", "train", "export")
OUTPUT = "check.json"  # under paths.reports; every other stage depends on it, so DVC runs this first


@stage
def main(params_file):
    # every section, so that a mistake anywhere stops the run before DVC removes any output
    paths, model, benchmark, discover, *_ = config.load(params_file, "paths", "model", "benchmark", *SECTIONS)
    checks.require_pipeline(paths, discover.root, model.base, benchmark.models)
    out = Path(paths.reports) / OUTPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checked": "params, output locations, model files"}) + "\n")


if __name__ == "__main__":
    main()
