"""The import structure ARCHITECTURE.md describes, checked from the source with the standard library (`ast`):

- no import cycle among the modules of `unitocom/`, counting the lazy imports inside functions too;
- the library is what the services import, never the other way round, and it holds no gRPC: only the generated
  stubs (`unitocom/v1/`) and the client SDK (`client.py`) import `grpc`;
- protobuf messages live at the service edge: the stubs, the wire format (`wire.py`) and the SDK. The library's
  data model is the dataclasses of `unitocom/messages.py` (the schemes, request validation and the MLLM stage use
  only those, and so do the stages and `pipeline.py`; the services convert with `wire`). Known exceptions,
  none since issue 11, would be listed below, and this test keeps that list from going stale;
- the foundations (the physical layer, data sets, tokenizer models, codecs, wire format, configuration) import
  nothing from the layers built on them (schemes, stages, the MLLM, metrics, training, evaluations, front ends);
- the services are thin: they reach the models through `unitocom.stages` / `unitocom.pipeline`, never directly.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Allowed importers of grpc (and grpc_* packages) inside unitocom/.
GRPC_ALLOWED = ("unitocom.v1", "unitocom.client")
# Allowed importers of protobuf messages (unitocom.v1.*, google.protobuf) inside unitocom/.
PROTOBUF_ALLOWED = ("unitocom.v1", "unitocom.wire", "unitocom.client")

# Known exceptions (module -> why), each of which must still be needed (see below). Issue 11 ("library data model
# as plain dataclasses; protobuf at the service edge") emptied the protobuf one.
KNOWN_GRPC_EXCEPTIONS: dict[str, str] = {}
KNOWN_PROTOBUF_EXCEPTIONS: dict[str, str] = {}

FOUNDATIONS = ("unitocom.config", "unitocom.errors", "unitocom.timing", "unitocom.link", "unitocom.data",
               "unitocom.models", "unitocom.codecs", "unitocom.wire", "unitocom.v1",
               "unitocom.options", "unitocom.messages")  # plain data: the send options and the library's messages
# What services/ may not import: model code is the library's, reached through the stages.
MODEL_CODE = ("unitocom.models", "unitocom.mllm", "unitocom.link", "unitocom.schemes", "unitocom.metrics",
              "unitocom.train")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(top: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / top).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth (lazy ones included).
    `from a import b` counts as importing a.b when that is a module, else a; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield (sub if sub in known else module), node.lineno


def _graph(top: str = "unitocom") -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    """(edges between unitocom's own modules, every import of each module with its line)."""
    mods = _modules(top)
    every = {m: list(_imports(m, p, set(mods))) for m, p in mods.items()}
    return {m: {t for t, _ in imps if t in mods and t != m} for m, imps in every.items()}, every


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(_path_through(sorted(comp), graph))
    return out


def _path_through(comp: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle inside a strongly connected component, for the message: start -> ... -> start."""
    members, path, seen = set(comp), [comp[0]], {comp[0]}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        back = [n for n in nxt if n == comp[0]]
        if back and len(path) > 1:
            return path + [comp[0]]
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return path + [nxt[0]]
        path.append(fresh[0])
        seen.add(fresh[0])


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_library():
    graph, _ = _graph()
    assert len(graph) > 50  # the whole library was read
    cycles = _cycles(graph)
    assert not cycles, "import cycles (lazy imports count): " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_the_services_or_the_web_stack():
    _, every = _graph()
    bad = [f"{m}:{line} imports {t}" for m, imps in every.items() for t, line in imps
           if _within(t, ("services", "fastapi", "starlette", "uvicorn"))]
    assert not bad, bad


def _confined(users: set[str], allowed: tuple[str, ...], known: dict | set, what: str, table: str) -> None:
    """Only modules within `allowed` use `what`, apart from the `known` exceptions, and none of those is stale."""
    bad = sorted(m for m in users if not _within(m, allowed) and m not in known)
    assert not bad, f"{what} outside {allowed}: {bad}"
    stale = sorted(set(known) - users)
    assert not stale, f"no longer use {what}: remove {stale} from {table}"


def test_grpc_only_in_the_stubs_and_the_sdk():
    _, every = _graph()
    users = {m for m, imps in every.items() for t, _ in imps if t == "grpc" or t.startswith(("grpc.", "grpc_"))}
    _confined(users, GRPC_ALLOWED, KNOWN_GRPC_EXCEPTIONS, "gRPC", "KNOWN_GRPC_EXCEPTIONS")


def test_protobuf_only_at_the_service_edge_apart_from_the_known_exceptions():
    _, every = _graph()
    users = {m for m, imps in every.items() for t, _ in imps if _within(t, ("unitocom.v1", "google.protobuf"))}
    _confined(users, PROTOBUF_ALLOWED, KNOWN_PROTOBUF_EXCEPTIONS,
              "protobuf messages (use plain dataclasses, issue 11)", "KNOWN_PROTOBUF_EXCEPTIONS")


def test_the_foundations_do_not_import_the_layers_built_on_them():
    graph, _ = _graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if _within(m, FOUNDATIONS)
                 for t in ts if not _within(t, FOUNDATIONS))
    assert not bad, bad


def test_services_reach_the_models_through_the_stages_only():
    mods = _modules("services")
    assert "services.channel.server" in mods
    bad = [f"{m}:{line} imports {t}" for m, p in mods.items() for t, line in _imports(m, p, set())
           if _within(t, MODEL_CODE)]
    assert not bad, bad
