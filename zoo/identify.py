"""``zoo identify``: the nearest gallery identity of each query image, or ``unknown`` (``zoo.gallery``).

    zoo identify --ckpt_path runs/faces/best.ckpt --gallery gallery.pt photos/ one.jpg

Prints one line per query image: file, identity (or ``unknown``), distance, nearest identity. A query
is ``unknown`` when the nearest gallery embedding is farther than the threshold: the model's distance
at validation's equal-error point, or ``--threshold``. ``--json`` prints the same as a JSON list.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo identify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", "--ckpt", dest="ckpt", required=True, help="checkpoint of the model that built the gallery")
    parser.add_argument("--gallery", required=True, help="gallery file from zoo enrol")
    parser.add_argument("--threshold", type=float, default=None, help="distance above which a query is unknown")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument("queries", nargs="+", help="image files or folders of them")
    args = parser.parse_args(argv)
    from zoo import cli_errors, gallery

    def run(_):
        model = gallery.load_model(args.ckpt)
        g = gallery.load_gallery(args.gallery, model)
        files = []
        for q in map(Path, args.queries):
            if q.is_dir():
                files += gallery.image_files(q)
            elif q.is_file():
                files.append(q)
            else:
                raise FileNotFoundError(f"query {str(q)!r} does not exist; give image files or folders of them")
        if not files:
            raise ValueError(f"no image files in {args.queries}; give image files or folders of them")
        answers = gallery.identify(model, g, gallery.read_images(files, model), args.threshold)
        rows = [{"file": str(f), **a} for f, a in zip(files, answers)]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                print(f"{r['file']}\t{r['identity']}\t{r['distance']:.4f}\t(nearest: {r['nearest']})")
        return 0

    return cli_errors.run(run, list(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
