"""Write the HTML template that makes `dvc plots show` render with no network.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so dvc_plots/index.html is
blank offline. DVC fills a custom template instead when `.dvc/config` names one
(`[plots] html_template`, a path relative to `.dvc/`); this one carries the three libraries inline,
bundled by the pinned vl-convert-python (the `plots` extra), and leaves out DVC's `{scripts}`
placeholder, through which the CDN <script> tags would come back.

    make setup        # runs: python tools/plots_template.py --out .dvc/plots_template.html

The output is gitignored: it is 0.9 MB of minified JavaScript, regenerated from the pinned package.
"""

import os
from importlib.metadata import version
from pathlib import Path

import click
import vl_convert

# DVC's plot templates declare the Vega-Lite v5 schema; v5.21 is the newest v5 vl-convert bundles.
VEGALITE_VERSION = "5.21"

# {plot_divs}: DVC's <div>s, each with an inline script calling the global vegaEmbed while the page
# parses, so the libraries must be defined before it by a classic (blocking) script, not a deferred
# <script type="module">. {refresh_tag}: DVC's auto-refresh <meta>, empty unless asked for.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Vega {vega}, Vega-Lite {vegalite}, Vega-Embed {embed}: bundled by vl-convert-python {vlc} -->
    <script type="text/javascript">
(function () {
"use strict";
@BUNDLE@
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template() -> str:
    """The page: DVC's default one with the libraries inline instead of from a CDN."""
    # The bundle is an ES module with no imports or exports that ends by assigning window.vegaEmbed,
    # window.vega and window.vegaLite. Wrapped in a strict function (a module's semantics) it runs as
    # a classic script, and its top-level names stay out of the global scope the DVC scripts share.
    bundle = vl_convert.javascript_bundle(vl_version=VEGALITE_VERSION)
    if "</script" in bundle.lower():  # would end the inline <script> early
        raise click.ClickException("the JavaScript bundle contains '</script': it cannot be inlined")
    # str.replace, not str.format: the bundle and the CSS are full of braces, and DVC itself fills
    # the {…} placeholders by plain replacement, so those must stay literal.
    page = PAGE.replace("{vega}", vl_convert.get_vega_version())
    page = page.replace("{vegalite}", VEGALITE_VERSION).replace("{embed}", vl_convert.get_vega_embed_version())
    page = page.replace("{vlc}", version("vl-convert-python"))
    return page.replace("@BUNDLE@", bundle)


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path(".dvc/plots_template.html"))
def main(out: Path) -> None:
    """Write the offline template to OUT (default .dvc/plots_template.html)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: an interrupted run never leaves DVC half a template.
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(template(), encoding="utf-8")
    os.replace(tmp, out)
    click.echo(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
