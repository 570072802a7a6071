"""Entry point of the ``gfla`` command: dispatches to one module per subcommand.

Subcommand modules are imported only when used, so ``gfla --help`` is fast and a broken
optional dependency of one command does not break the others. Each module exposes
``main(argv: list[str]) -> int``; ``argv[0]`` is the program name (``gfla <command>``).
"""

import importlib
import logging
import sys

COMMANDS = {
    "quickstart": ("gfla_tf.cli.quickstart", "synthesise data, train both stages, export, report"),
    "train": ("gfla_tf.cli.train", "train one stage from a config (--config FILE, --config.a.b=V)"),
    "data": ("gfla_tf.cli.data", "dataset tools: synth, check"),
    "convert": ("gfla_tf.cli.convert", "convert the authors' PyTorch checkpoints to .keras"),
    "export": ("gfla_tf.cli.export", "export a model as a SavedModel (TF Serving) or TFLite"),
    "generate": ("gfla_tf.cli.generate", "render a person photo in a new pose"),
    "demo": ("gfla_tf.cli.demo", "a pose editor in the browser (local web server)"),
    "evaluate": ("gfla_tf.cli.evaluate", "compute SSIM/LPIPS/FID/EPE and write a report"),
    "doctor": ("gfla_tf.cli.doctor", "show the custom op library status and environment"),
}


def _usage():
    lines = ["usage: gfla <command> [options]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines.append("")
    lines.append("Run 'gfla <command> --help' for the options of a command.")
    return "\n".join(lines)


def main(argv=None):
    """Runs ``gfla <command> ...`` and returns its exit status."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if len(argv) >= 2 else 2
    command = argv[1]
    if command not in COMMANDS:
        print(f"gfla: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[command][0])
    result = module.main([f"gfla {command}"] + argv[2:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
