"""Every ``srtrain`` sub-command builds its parser and prints help (argparse formats help lazily)."""

import pytest
from srscope.training.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"srtrain {command}" in capsys.readouterr().out
