"""Names of new control-plane Machines from `spec.machineNaming.template`, as in Cluster API.

The template is a Go template over three variables: `{{ .cluster.name }}`,
`{{ .kubeadmControlPlane.name }}` and `{{ .random }}` (5 characters from
Kubernetes' `generateName` alphabet); unset, it is
`{{ .kubeadmControlPlane.name }}-{{ .random }}`. `{{ .random }}` must appear
in it, spelled exactly so (Cluster API's webhook checks the same). A name
longer than 63 characters is cut to 58 and given another 5 random characters.
The Machine, its KubeadmConfig and its infrastructure machine share the name.

Only variable actions are supported (with Go's `{{-`/`-}}` trimming): a
template using functions, pipelines or control structures is reported as one
kcp cannot render rather than rendered differently from Cluster API.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping

from kcp.api.objects import KubeadmControlPlaneView

__all__ = [
    "DEFAULT_TEMPLATE",
    "RANDOM_PART",
    "MachineNamingError",
    "machine_naming_template",
    "naming_problem",
    "random_string",
    "render_machine_name",
]

DEFAULT_TEMPLATE = "{{ .kubeadmControlPlane.name }}-{{ .random }}"
RANDOM_PART = "{{ .random }}"
"""What every template must contain, verbatim."""

MAX_NAME_LENGTH = 63
RANDOM_LENGTH = 5
_MAX_TEMPLATE_LENGTH = 256
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters Kubernetes' `generateName` uses (no vowels: no accidental words)."""

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_FIELD = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_FIELD_PATH = "spec.machineNaming.template"


class MachineNamingError(ValueError):
    """The naming template cannot give a valid name; the message says what to fix."""


def random_string(length: int = RANDOM_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _placeholder_random() -> str:
    # Every random part is drawn from one alphabet of valid name characters, so any one of
    # them gives the same verdict; the check runs every reconcile and skips the system's
    # random source.
    return _ALPHABET[0] * RANDOM_LENGTH


def machine_naming_template(kcp: KubeadmControlPlaneView) -> str:
    """The KCP's `spec.machineNaming.template`, or the default when unset or empty."""
    naming = (kcp.raw.get("spec") or {}).get("machineNaming")
    template = naming.get("template") if isinstance(naming, Mapping) else None
    return template if isinstance(template, str) and template else DEFAULT_TEMPLATE


def _lookup(variables: Mapping[str, object], path: str, template: str) -> str:
    value: object = variables
    for key in path.lstrip(".").split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise MachineNamingError(
                f"{_FIELD_PATH} {template!r} uses {{{{ {path} }}}}, which is not defined; use "
                "{{ .cluster.name }}, {{ .kubeadmControlPlane.name }} and {{ .random }}"
            )
        value = value[key]
    if isinstance(value, Mapping):
        raise MachineNamingError(
            f"{_FIELD_PATH} {template!r} uses {{{{ {path} }}}}, which is not a single value; "
            "use {{ .cluster.name }}, {{ .kubeadmControlPlane.name }} and {{ .random }}"
        )
    return str(value)


def _render(template: str, variables: Mapping[str, object]) -> str:
    parts: list[str] = []
    position = 0
    trim_next = False  # the previous action ended in `-}}`: the text after it loses its blanks
    for match in _ACTION.finditer(template):
        text = template[position : match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        parts.append(text)
        expression = match.group(2).strip()
        if not _FIELD.fullmatch(expression):
            raise MachineNamingError(
                f"{_FIELD_PATH} {template!r}: kcp renders only variables in actions, not "
                f"{{{{ {expression} }}}}; use {{{{ .cluster.name }}}}, "
                "{{ .kubeadmControlPlane.name }} and {{ .random }} with plain text between"
            )
        parts.append(_lookup(variables, expression, template))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = template[position:]
    if trim_next:
        tail = tail.lstrip(" \t\r\n")
    if "{{" in tail or "}}" in tail:
        raise MachineNamingError(
            f"{_FIELD_PATH} {template!r} has an unclosed or stray '{{{{' or '}}}}'"
        )
    parts.append(tail)
    return "".join(parts)


def render_machine_name(
    template: str,
    *,
    cluster_name: str,
    kcp_name: str,
    random: Callable[[], str] = random_string,
) -> str:
    """The name of a new Machine; raises `MachineNamingError` saying what to fix."""
    if len(template) > _MAX_TEMPLATE_LENGTH:
        raise MachineNamingError(
            f"{_FIELD_PATH} is {len(template)} characters long; shorten it to at most "
            f"{_MAX_TEMPLATE_LENGTH}"
        )
    if RANDOM_PART not in template:
        raise MachineNamingError(
            f"{_FIELD_PATH} {template!r} lacks {RANDOM_PART}; add it (spelled exactly so) so "
            "that every Machine gets a unique name"
        )
    name = _render(
        template,
        {
            "cluster": {"name": cluster_name},
            "kubeadmControlPlane": {"name": kcp_name},
            "random": random(),
        },
    )
    if len(name) > MAX_NAME_LENGTH:
        name = name[: MAX_NAME_LENGTH - RANDOM_LENGTH] + random()
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise MachineNamingError(
            f"{_FIELD_PATH} {template!r} gives the Machine name {name!r}, which is not a valid "
            "Kubernetes object name (lower-case letters, digits, '-' and '.', starting and "
            "ending with a letter or digit); change the text around the variables"
        )
    return name


def naming_problem(kcp: KubeadmControlPlaneView) -> str | None:
    """What is wrong with the naming template, checked as Cluster API's webhook does
    (with the sample names `cluster` and `kubeadmcontrolplane`); None when it is fine."""
    try:
        render_machine_name(
            machine_naming_template(kcp),
            cluster_name="cluster",
            kcp_name="kubeadmcontrolplane",
            random=_placeholder_random,
        )
    except MachineNamingError as error:
        return str(error)
    return None
