"""``zoo enrol``: build a gallery of embeddings from a folder of identities (``zoo.gallery``).

    zoo enrol --ckpt_path runs/faces/best.ckpt --folder gallery/ --out gallery.pt

``gallery/<name>/<images>``: one or a few images per identity. The file records the model's weight
fingerprint (``zoo identify`` refuses a gallery built by another model) and its validation threshold.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo enrol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", "--ckpt", dest="ckpt", required=True, help="checkpoint of a metric-learning model (zoo fit)")
    parser.add_argument("--folder", required=True, help="folder/<identity>/<images>")
    parser.add_argument("--out", default="gallery.pt", help="gallery file to write (default gallery.pt)")
    args = parser.parse_args(argv)
    from zoo import cli_errors, gallery

    def run(_):
        model = gallery.load_model(args.ckpt)
        g = gallery.build_gallery(model, args.folder)
        gallery.save_gallery(g, args.out)
        print(f"enrolled {len(set(g['names']))} identities ({len(g['names'])} images) into {args.out} "
              f"(threshold {g['threshold']:.4f})")
        return 0

    return cli_errors.run(run, list(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
