"""A small Dockerfile reader: stages, instructions, global ARG defaults, .dockerignore."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD, or None for shell form."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """`COPY --from=builder --chown=1:1 a b` -> ({"from": "builder", ...}, ["a", "b"])."""
        flags: dict[str, str] = {}
        words: list[str] = []
        for word in shlex.split(self.arguments):
            if word.startswith("--") and not words:
                name, _, value = word[2:].partition("=")
                flags[name] = value
            else:
                words.append(word)
        return flags, words


@dataclass
class Stage:
    base: str
    name: str | None
    index: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    stages: list[Stage]
    global_args: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def chain(self, stage: Stage) -> list[Stage]:
        """`stage` and the stages it is built FROM, nearest first."""
        names = {s.name: s for s in self.stages if s.name}
        chain = [stage]
        while chain[-1].base in names:
            chain.append(names[chain[-1].base])
        return chain

    def image(self, stage: Stage) -> str:
        """The registry image at the root of `stage`'s chain, ARGs expanded."""
        return self.expand(self.chain(stage)[-1].base)

    def effective(self, stage: Stage, keyword: str) -> Instruction | None:
        """The instruction (USER, ENTRYPOINT, WORKDIR...) in force in `stage`, inherited or not."""
        for link in self.chain(stage):
            found = link.last(keyword)
            if found is not None:
                return found
        return None

    def env(self, stage: Stage) -> dict[str, str]:
        values: dict[str, str] = {}
        for link in reversed(self.chain(stage)):
            for instruction in link.all("ENV"):
                for word in shlex.split(instruction.arguments):
                    name, _, value = word.partition("=")
                    values[name] = value
        return values

    def expand(self, text: str) -> str:
        return re.sub(
            r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), text
        )


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines, drop comments and blanks; keep the first line number."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        lines.append((start, " ".join(pending)))
    return lines


def parse(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for number, line in logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), number)
        if instruction.keyword == "FROM":
            _flags, words = instruction.flags_and_words()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, len(stages)))
        elif not stages:
            if instruction.keyword == "ARG":
                name, _, default = instruction.arguments.partition("=")
                global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(stages, global_args)


def dockerignore_includes(path: str, ignore_file: Path = ROOT / ".dockerignore") -> bool:
    """Whether `path` (relative to the context) reaches the build, as Docker decides."""
    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)
        else:
            hit = any(_match(prefix, body) for prefix in prefixes)
        if hit:
            included = negate
    return included


def _match(path: str, pattern: str) -> bool:
    # filepath.Match semantics: `*` does not cross `/`.
    regex = "".join(
        "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in pattern
    )
    return re.fullmatch(regex, path) is not None
