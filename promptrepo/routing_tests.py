"""Routing tests: YAML files under `tests/` that say which prompt a context must get.

A repository states its own expectations (`file`, `route`, text it must or must not contain, a
size bound, model parameters), and validation runs them, so a commit that breaks one is rejected
like any other error and the last good commit keeps serving. Pure: parse, resolve, compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import safeyaml
from .context import Context, ContextError
from .diagnostics import Diagnostic, diagnostic
from .render import render
from .repository import PromptRepository, RepositoryError
from .resolve import Resolution, resolve

TEST_KEYS = ("name", "context", "expect")
EXPECT_KEYS = ("file", "route", "contains", "not_contains", "max_bytes", "parameters")
_MISSING = object()


@dataclass(frozen=True)
class RoutingTest:
    """One test case, where it is written (for annotations) and what it expects."""

    path: str
    line: int
    column: int
    name: str
    context: Context
    expect: Mapping[str, Any]  # a subset of EXPECT_KEYS; `file: null` means the built-in prompt


@dataclass(frozen=True)
class TestResult:
    test: RoutingTest
    file_path: str | None  # what the context resolved to (None: built-in prompt or an error)
    failures: tuple[str, ...] = ()

    __test__ = False  # not a pytest class

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.test.name,
            "path": self.test.path,
            "line": self.test.line,
            "context": self.test.context.to_dict(),
            "file_path": self.file_path,
            "passed": self.passed,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class TestRun:
    """Every test of a repository: results, and the problems that kept a test from running."""

    results: tuple[TestResult, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()  # test-invalid and test-failed, by file and line
    __test__ = False

    @property
    def passed(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


@dataclass
class _Reader:
    path: str
    tests: list[RoutingTest] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)

    def report(self, message: str, node: Node | None) -> None:
        line, column = safeyaml.position(node) if node is not None else (None, None)
        self.problems.append(diagnostic("test-invalid", self.path, message, line, column))

    def read(self, text: str) -> None:
        try:
            root = safeyaml.compose(text)
        except safeyaml.YamlProblem as exc:
            self.problems.append(
                diagnostic(
                    "test-invalid",
                    self.path,
                    f"the test file is not valid YAML: {exc.message}",
                    exc.line,
                    exc.column,
                )
            )
            return
        if root is None:
            self.report("the test file is empty: write a list of tests", None)
            return
        if not isinstance(root, SequenceNode):
            self.report("a test file is a YAML list of tests (`- name: ...`)", root)
            return
        for item in root.value:
            self.case(item)

    def case(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.report("a test is a mapping with `name`, `context` and `expect`", node)
            return
        try:
            safeyaml.flatten(node)
        except safeyaml.YamlProblem as exc:
            self.report(f"the test cannot be read: {exc.message}", node)
            return
        fields = self.fields(node, TEST_KEYS, "a test")
        if fields is None:
            return
        name_node = fields.get("name")
        if name_node is None or not safeyaml.is_str(name_node) or not name_node.value.strip():
            self.report("the test has no `name:` (text)", name_node or node)
            return
        context = self.context(fields.get("context"), node)
        expect = self.expect(fields.get("expect"), node)
        if context is None or expect is None:
            return
        line, column = safeyaml.position(node)
        self.tests.append(
            RoutingTest(self.path, line, column, name_node.value.strip(), context, expect)
        )

    def fields(
        self, node: MappingNode, known: tuple[str, ...], what: str
    ) -> dict[str, Node] | None:
        found: dict[str, Node] = {}
        ok = True
        for key, value in node.value:
            name = key.value if safeyaml.is_str(key) else None
            if name not in known:
                shown = name if name is not None else "(not text)"
                self.report(f"unknown key `{shown}` in {what}: use {', '.join(known)}", key)
                ok = False
                continue
            found[name] = value
        return found if ok else None

    def context(self, node: Node | None, parent: Node) -> Context | None:
        if node is None:
            return Context()
        if not isinstance(node, MappingNode):
            self.report("`context:` must be a mapping such as {category: meeting}", node)
            return None
        try:
            value = safeyaml.construct(node)
            return Context.from_mapping(value)
        except (safeyaml.YamlProblem, ContextError) as exc:
            self.report(f"`context:` cannot be used: {exc}", node)
            return None

    def expect(self, node: Node | None, parent: Node) -> dict[str, Any] | None:
        if not isinstance(node, MappingNode) or not node.value:
            self.report("the test has no `expect:` mapping, so it checks nothing", node or parent)
            return None
        fields = self.fields(node, EXPECT_KEYS, "`expect:`")
        if fields is None:
            return None
        expect: dict[str, Any] = {}
        for name, value_node in fields.items():
            value = self.expected_value(name, value_node)
            if value is _MISSING:
                return None
            expect[name] = value
        return expect

    def expected_value(self, name: str, node: Node) -> Any:
        is_null = isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"
        if name == "file":
            if is_null or safeyaml.is_str(node):
                return None if is_null else node.value
            self.report("`file:` is a repository path, or null for the built-in prompt", node)
        elif name == "route":
            if safeyaml.is_str(node):
                return node.value
            self.report("`route:` is a route name from PATH", node)
        elif name in ("contains", "not_contains"):
            if safeyaml.is_str(node):
                return (node.value,)
            if isinstance(node, SequenceNode) and all(safeyaml.is_str(n) for n in node.value):
                return tuple(n.value for n in node.value)
            self.report(f"`{name}:` is a text or a list of texts", node)
        elif name == "max_bytes":
            value = self.plain(node)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
            self.report("`max_bytes:` is a number of bytes above 0", node)
        else:
            value = self.plain(node) if isinstance(node, MappingNode) else None
            if isinstance(value, dict):
                return value
            self.report("`parameters:` is a mapping such as {temperature: 0.2}", node)
        return _MISSING

    def plain(self, node: Node) -> Any:
        try:
            return safeyaml.construct(node)
        except safeyaml.YamlProblem:
            return None


def parse_tests(path: str, text: str) -> tuple[list[RoutingTest], list[Diagnostic]]:
    """The tests of one file, and `test-invalid` diagnostics for what cannot be run."""
    reader = _Reader(path)
    reader.read(text)
    return reader.tests, reader.problems


def run_test(repository: PromptRepository, test: RoutingTest) -> TestResult:
    """Resolve the test's context and compare with what it expects."""
    try:
        resolution = resolve(repository, test.context)
    except RepositoryError as exc:
        return TestResult(test, None, (f"the context cannot be resolved: {exc}",))
    return TestResult(test, resolution.file_path, tuple(_failures(test.expect, resolution)))


def _failures(expect: Mapping[str, Any], resolution: Resolution) -> list[str]:
    failures = []
    got = resolution.file_path
    if "file" in expect and expect["file"] != got:
        wanted = expect["file"] or "the built-in prompt"
        failures.append(f"expected file {wanted}, got {got or 'the built-in prompt'}")
    if "route" in expect and expect["route"] != resolution.route:
        failures.append(f"expected route {expect['route']}, got {resolution.route or 'none'}")
    text = render(resolution.content, resolution.variables).text
    for needle in expect.get("contains", ()):
        if needle not in text:
            failures.append(f"the prompt does not contain {needle!r}")
    for needle in expect.get("not_contains", ()):
        if needle in text:
            failures.append(f"the prompt contains {needle!r}")
    size = len(text.encode("utf-8"))
    if "max_bytes" in expect and size > expect["max_bytes"]:
        failures.append(f"the prompt is {size} bytes, above max_bytes {expect['max_bytes']}")
    parameters = safeyaml.thaw(resolution.parameters)
    for key, wanted in expect.get("parameters", {}).items():
        value = parameters.get(key, _MISSING)
        if value is _MISSING:
            failures.append(f"parameter {key} is not set (expected {wanted!r})")
        elif value != wanted:
            failures.append(f"parameter {key} is {value!r}, expected {wanted!r}")
    return failures


def run_tests(repository: PromptRepository | None, tests: Mapping[str, str]) -> TestRun:
    """Parse and run every test file (path -> text); each failure is a `test-failed` error at
    the test's line. Without a usable repository no test runs (PATH's own errors say why)."""
    results: list[TestResult] = []
    found: list[Diagnostic] = []
    for path in sorted(tests):
        cases, problems = parse_tests(path, tests[path])
        found += problems
        if repository is None:
            continue
        for case in cases:
            result = run_test(repository, case)
            results.append(result)
            if not result.passed:
                found.append(
                    diagnostic(
                        "test-failed",
                        case.path,
                        f"routing test {case.name!r} failed: " + "; ".join(result.failures),
                        case.line,
                        case.column,
                    )
                )
    return TestRun(tuple(results), tuple(sorted(found, key=Diagnostic.sort_key)))


def run_repository_tests(
    files: Mapping[str, bytes], *, bases: Mapping[str, Mapping[str, bytes]] | None = None
) -> tuple[TestRun, str | None]:
    """Run a repository's tests (path -> bytes; `bases`: the repositories its PATH extends):
    the run, and why none could run (or None)."""
    from .repository import analyse, repository_from

    result = analyse(files, bases=bases)
    unreadable = [d for d in result.diagnostics if d.path.startswith("tests/")]
    try:
        repository = repository_from(result)
    except RepositoryError as exc:
        return TestRun((), tuple(unreadable)), str(exc)
    run = run_tests(repository, result.tests)
    everything = tuple(sorted([*unreadable, *run.diagnostics], key=Diagnostic.sort_key))
    return TestRun(run.results, everything), None
