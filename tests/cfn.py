"""Reading the CloudFormation template in tests: YAML with the short intrinsic tags, and a small
evaluator (parameters, pseudo parameters, conditions, Ref / Fn::If / Fn::Sub / Fn::Join /
Fn::GetAtt / Fn::Base64 / Fn::FindInMap) so a test can ask what a deployment with given
parameters would contain.

It resolves what our template uses and fails loudly on anything else; it is no CloudFormation
(cfn-lint and moto's CloudFormation check the template itself)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deploy" / "cloudformation" / "ecs-reconciler.yaml"
NO_VALUE = object()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader plus CloudFormation's `!Ref`, `!Sub`, `!GetAtt`... tags."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form."""
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)
    return template


@cache
def template() -> dict[str, Any]:
    """The committed template (parsed once per test process)."""
    return load_template()


@dataclass
class Deployment:
    """The template evaluated for `parameters` (defaults for the rest)."""

    template: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    # values of pseudo parameters ("AWS::Region": "eu-west-1"); the others stay "<AWS::...>"
    pseudo: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template["Parameters"]
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise ValueError(f"not template parameters: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, declaration in declared.items():
            value = self.parameters.get(name, declaration.get("Default"))
            if value is None:
                value = f"<{name}>"
            if str(declaration["Type"]).startswith("List<") or declaration["Type"] == (
                "CommaDelimitedList"
            ):
                value = [v for v in str(value).split(",")] if isinstance(value, str) else value
            values[name] = value
        self.values = values
        self.conditions: dict[str, bool] = {}
        for name in self.template.get("Conditions", {}):
            self.condition(name)  # conditions may refer to conditions declared before them

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.evaluate(self.template["Conditions"][name]))
        return self.conditions[name]

    def resources(self) -> dict[str, dict[str, Any]]:
        """Logical id -> resource (Properties resolved) of every resource created."""
        created = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            created[name] = {**resource, "Properties": self.resolve(resource.get("Properties", {}))}
        return created

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.resources().items() if r["Type"] == resource_type}

    def evaluate(self, expression: Any) -> Any:
        """A condition expression's value."""
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, argument),) = expression.items()
            if function == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return str(left) == str(right)
            if function == "Fn::Not":
                return not self.evaluate(argument[0])
            if function == "Fn::And":
                return all(self.evaluate(a) for a in argument)
            if function == "Fn::Or":
                return any(self.evaluate(a) for a in argument)
            if function in ("Condition", "Fn::Condition"):  # another condition, by name
                return self.condition(argument)
            if function == "Condition":
                return self.condition(argument)
        raise ValueError(f"unsupported condition expression {expression!r}")

    def resolve(self, value: Any) -> Any:
        """`value` with intrinsic functions applied; AWS::NoValue entries removed."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if function == "Fn::GetAtt":
                return f"<{argument[0]}.{argument[1]}>"
            if function == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub(m.group(1))), argument)
            if function == "Fn::Join":
                separator, items = argument
                return separator.join(str(i) for i in self.resolve(items))
            if function == "Fn::Base64":
                return self.resolve(argument)
            if function == "Fn::FindInMap":
                name, top, second = (self.resolve(a) for a in argument)
                return self.template["Mappings"][name][top][second]
            if function == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if function.startswith("Fn::"):
                raise ValueError(f"unsupported intrinsic function {function}")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name.startswith("AWS::"):
            return self.pseudo.get(name, f"<{name}>")
        if name not in self.template["Resources"]:
            raise ValueError(f"Ref to unknown {name}")
        return f"<{name}>"

    def _sub(self, name: str) -> Any:
        if "." in name:
            resource, attribute = name.split(".", 1)
            return f"<{resource}.{attribute}>"
        return self._ref(name)
