"""Run a CLEVR question's functional program on a scene: the exact reasoner of neural-symbolic VQA (NS-VQA, Yi et
al. 2018), for the functions the generator here writes (`data.questions`).

Given the scene the question was drawn from it gives the recorded answer (tests check every family); given a scene
read from the received tokens (`scripts/slots_reason.py`) it says what that perception answers when the reasoning
is exact. A program that cannot run on the scene (a `unique` that finds no object or several) raises
`ProgramFailed`: the reader made a mistake the question can see.
"""
from __future__ import annotations

from unitocom.data.scenes import relationships
from unitocom.data.vocab import COLORS, MATERIALS, RELATIONS, SHAPES, SIZES


class ProgramFailed(ValueError):
    """The program has no answer on this scene (a `unique` that finds 0 or 2+ objects)."""


def execute(program: list[dict], objects: list[dict], relations: dict[str, list[list[int]]] | None = None) -> str:
    """CLEVR v1.0 program nodes ({"function", "inputs", "value_inputs"}, in order; the last is the answer) on
    `objects` (each with size, color, shape, material and 3d_coords) -> the answer as the data set writes it
    ("yes"/"no", a count, an attribute value). relations: `scenes.relationships(objects)`, computed when None."""
    rel = relationships(objects) if relations is None else relations
    values: list = []
    for node in program:
        f, args, words = node["function"], [values[i] for i in node["inputs"]], node.get("value_inputs") or []
        if f == "scene":
            out = list(range(len(objects)))
        elif f.startswith("filter_"):
            attr = f[len("filter_"):]
            out = [i for i in args[0] if objects[i][attr] == words[0]]
        elif f == "unique":
            if len(args[0]) != 1:
                raise ProgramFailed(f"unique over {len(args[0])} objects")
            out = args[0][0]
        elif f == "relate":
            out = list(rel[words[0]][args[0]])
        elif f == "count":
            out = len(args[0])
        elif f == "exist":
            out = bool(args[0])
        elif f.startswith("query_"):
            out = objects[args[0]][f[len("query_"):]]
        elif f.startswith("equal_") or f == "greater_than":  # equal_<attribute>, equal_integer, greater_than
            out = args[0] > args[1] if f == "greater_than" else args[0] == args[1]
        else:
            raise ValueError(f"program function {f!r} is not one the generator writes")
        values.append(out)
    answer = values[-1]
    return ("yes" if answer else "no") if isinstance(answer, bool) else str(answer)



# A program in words the questions use, so the text tokenizer writes it in few ids: a filter is its value alone
# (the attributes' values are disjoint), a relation its name; the rest one or two words each.
_WORD = {"scene": "things", "unique": "the", "count": "many", "exist": "any", "greater_than": "more",
         "equal_integer": "same number"}
_VALUE_ATTRIBUTE = {v: a for a, values in (("color", COLORS), ("shape", SHAPES), ("size", SIZES),
                                           ("material", MATERIALS)) for v in values}
_ATTRIBUTES = ("color", "shape", "size", "material")


def _signature(function: str) -> tuple[tuple[str, ...], str]:
    """(the types of a function's inputs, the type of its result): objects (a set), object (one), number, truth,
    value (an attribute's value). CLEVR's functions are typed; a written program that mixes them up cannot run."""
    if function == "scene":
        return (), "objects"
    if function.startswith("filter_"):
        return ("objects",), "objects"
    if function == "relate":
        return ("object",), "objects"
    if function == "unique":
        return ("objects",), "object"
    if function == "count":
        return ("objects",), "number"
    if function == "exist":
        return ("objects",), "truth"
    if function.startswith("query_"):
        return ("object",), "value"
    if function in ("equal_integer", "greater_than"):
        return ("number", "number"), "truth"
    return ("value", "value"), "truth"  # equal_<attribute>


def to_text(program: list[dict]) -> str:
    """A program as words, its nodes in order: "things red circle the left things many" is count(filter(relate(
    unique(filter(filter(scene, red), circle)), left))... read as postfix. The generator writes every node after
    its inputs and a binary node right after its second input's branch, so `from_text` rebuilds the tree."""
    words = []
    for node in program:
        f, values = node["function"], node.get("value_inputs") or []
        if f.startswith("filter_") or f == "relate":
            words += values
        elif f.startswith("query_"):
            words.append(f[len("query_"):])
        elif f.startswith("equal_") and f != "equal_integer":
            words += ["same", f[len("equal_"):]]
        elif f in _WORD:
            words.append(_WORD[f])
        else:
            raise ValueError(f"program function {f!r} is not one the generator writes")
    return " ".join(words)


def from_text(text: str) -> list[dict]:
    """`to_text`'s words -> program nodes, read as postfix: each function takes the last results its inputs need.
    Raises ProgramFailed for words that do not make one program (an unknown word, inputs missing, of the wrong type
    or left over, an end that is not an answer), as a garbled or mis-written program does."""
    words, nodes, stack = text.split(), [], []  # stack: (node id, its result's type)
    i = 0
    while i < len(words):
        w, values = words[i], []
        i += 1
        if w == "same" and i < len(words) and (words[i] in _ATTRIBUTES or words[i] == "number"):
            f = "equal_integer" if words[i] == "number" else f"equal_{words[i]}"
            i += 1
        elif w in _VALUE_ATTRIBUTE:
            f, values = f"filter_{_VALUE_ATTRIBUTE[w]}", [w]
        elif w in RELATIONS:
            f, values = "relate", [w]
        elif w in _ATTRIBUTES:
            f = f"query_{w}"
        elif w in _WORD.values():
            f = next(k for k, v in _WORD.items() if v == w)
        else:
            raise ProgramFailed(f"{w!r} is not a word of a program")
        needs, gives = _signature(f)
        k = len(needs)
        if len(stack) < k:
            raise ProgramFailed(f"{f} needs {k} inputs, has {len(stack)}")
        got = stack[len(stack) - k:] if k else []
        if tuple(t for _, t in got) != needs:
            raise ProgramFailed(f"{f} reads {', '.join(needs)}, was given {', '.join(t for _, t in got)}")
        del stack[len(stack) - k:]
        nodes.append({"function": f, "inputs": [i for i, _ in got], "value_inputs": values})
        stack.append((len(nodes) - 1, gives))
    if len(stack) != 1:
        raise ProgramFailed(f"{len(stack)} results left, a program has one")
    if stack[0][1] in ("objects", "object"):
        raise ProgramFailed(f"the program ends in {nodes[-1]['function']}, which gives {stack[0][1]}, not an answer")
    return nodes
