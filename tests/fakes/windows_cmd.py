"""The arguments the Azure CLI receives on Windows, where `az` is the batch file `az.cmd`.

Python's subprocess joins a hook's argument list into one command line (`subprocess.list2cmdline`, which quotes an
argument only when it holds a space or tab: docs.python.org/3/library/subprocess.html, "Converting an argument
sequence to a string on Windows"); a `.cmd` file runs under `cmd.exe /c` (learn windows/win32/api/processthreadsapi
CreateProcessW, "To run a batch file..."). cmd parses that line, then parses it again inside az.cmd, whose MSI
version forwards `%*` from within a parenthesized `IF` block (Azure/azure-cli build_scripts/windows/scripts/az.cmd,
quoted in Azure/azure-cli#14783):

    @IF EXIST "%~dp0\\..\\python.exe" (
      SET AZ_INSTALLER=MSI
      "%~dp0\\..\\python.exe" -IBm azure.cli %*
    ) ELSE ( ... )

What that does to an argument outside double quotes, as the Azure CLI's issues report it:
- `)` closes the block early: "<next token> was unexpected at this time." and nothing runs (Azure/azure-cli#14783
  `--settings "TestKey=@Microsoft.KeyVault(SecretUri=...)" --resource-group ...` -> "--resource-group was unexpected
  at this time."; #28692 `-p "1ab)2ab"` -> "2ab was unexpected at this time."; #25173; #33979).
- `&` and `|` end the command, and what follows runs as another one (#15214 `...&$expand=All` -> "'$expand' is not
  recognized as an internal or external command"); `<` and `>` redirect (#26369: `>` created a file).
- `^` is the escape character: it is removed, at each of the two parses.
- `%NAME%` is replaced by that variable when it is defined, on the first parse only (%* is not expanded again).
Inside double quotes none of these apply; a double quote toggles quoting, and cmd knows no backslash escape, so a
`\\"` from list2cmdline toggles it too. python.exe then splits what is left by the Microsoft C runtime's rules
(learn cpp/c-language/parsing-c-command-line-arguments), which undo list2cmdline's quoting.

This module is the stricter reading where those sources leave room: any `&`, `|`, `<`, `>` outside quotes fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence

_BLANKS = " \t"


class BatchError(Exception):
    """What cmd prints on stderr, and its exit code, when the line cannot run as intended."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _first_token(rest: str) -> str:
    """cmd's next token: its delimiters are blanks, `,`, `;` and `=` (#15214 reports `$expand`, not `$expand=All`)."""
    token = rest.lstrip(_BLANKS + ",;=")
    return re.split(r"[ \t,;=]", token, maxsplit=1)[0] if token else ""


def _expand_percent(line: str, env: Mapping[str, str]) -> str:
    """Command-line context (cmd /c): a defined %NAME% is replaced; anything else stays as it is."""

    def replace(match: re.Match[str]) -> str:
        return env.get(match[1], match[0]) if match[1] else match[0]

    return re.sub(r"%([^%\r\n]*)%", replace, line)


def _parse(line: str, *, in_block: bool) -> str:
    """One pass of cmd's phase 2 over the argument text: quotes, carets, operators, and `)` within a block."""
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == '"':
            quoted = not quoted
            out.append(char)
        elif quoted:
            out.append(char)
        elif char == "^":
            i += 1
            if i < len(line):
                out.append(line[i])
        elif char in "&|":
            token = _first_token(line[i + 1 :].lstrip("&|"))
            raise BatchError(
                f"'{token}' is not recognized as an internal or external command,\noperable program or batch file.",
                9009,
            )
        elif char in "<>":
            raise BatchError("The system cannot find the file specified.", 1)
        elif char == ")" and in_block:
            token = _first_token(line[i + 1 :]) or ")"
            raise BatchError(f"{token} was unexpected at this time.", 255)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def split_c_runtime(line: str) -> list[str]:
    """argv as the Microsoft C runtime builds it from a command line (2n backslashes before a quote are n
    backslashes and the quote toggles; 2n+1 are n and a literal quote; `""` inside quotes is one quote)."""
    args: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        arg: list[str] = []
        quoted = False
        while i < n:
            char = line[i]
            if char == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and line[j] == '"':
                    arg.append("\\" * (count // 2))
                    if count % 2:
                        arg.append('"')
                        j += 1
                    i = j
                else:
                    arg.append("\\" * count)
                    i = j
            elif char == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            elif char in _BLANKS and not quoted:
                break
            else:
                arg.append(char)
                i += 1
        args.append("".join(arg))


def through_az_cmd(args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The argv azure.cli receives when a program runs `az.cmd` with `args` through subprocess; BatchError when
    cmd refuses the line (nothing reaches the CLI then)."""
    line = subprocess.list2cmdline(list(args))
    first = _parse(_expand_percent(line, os.environ if env is None else env), in_block=False)
    return split_c_runtime(_parse(first, in_block=True))
