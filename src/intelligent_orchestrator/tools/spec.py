"""Tools: a specification plus an async implementation, and the ``@tool`` decorator."""

from __future__ import annotations

import hashlib
import inspect
import json
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import fastjsonschema  # pyright: ignore[reportMissingTypeStubs]
import httpx
import jsonschema
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ..domain.models import ToolSpecification
from ..errors import ConfigError, ToolError, ToolInputError
from ..llm import BoundLlm
from ..settings import ToolSettings

Implementation = Callable[[dict[str, Any], "ToolContext"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a tool produced, stored in the workspace's ``artifacts/`` folder."""

    path: str  # relative to the workspace
    media_type: str
    size: int
    sha256: str


@dataclass(slots=True, kw_only=True)
class ToolContext:
    """What a running tool may use: where it is, its workspace and its idempotency key."""

    task_id: str
    step_id: str
    workspace: Path
    idempotency_key: str
    http_timeout_seconds: float = 30.0
    http_max_bytes: int = 5_000_000
    http_transport: httpx.AsyncBaseTransport | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    attempt: int = 0
    config: ToolSettings = field(default_factory=ToolSettings)
    home: Path | None = (
        None  # ORCHESTRATOR_HOME, for tools that write outside the workspace (published/)
    )
    llm: BoundLlm | None = None  # the model gateway, bound to this step

    def require_llm(self) -> BoundLlm:
        if self.llm is None:
            raise ToolError(
                "this tool needs a model, and no model gateway is configured here",
                tool_id=None,
            )
        return self.llm

    @property
    def artifacts_dir(self) -> Path:
        return self.workspace / "artifacts" / self.task_id

    def save_artifact(self, name: str, data: bytes, *, media_type: str | None = None) -> Artifact:
        """Write ``data`` under ``artifacts/<task>/<step>-<name>`` and remember it."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "artifact"
        target = self.artifacts_dir / f"{self.step_id}-{safe}"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        art = Artifact(
            path=target.relative_to(self.workspace).as_posix(),
            media_type=media_type or mimetypes.guess_type(safe)[0] or "application/octet-stream",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.artifacts.append(art)
        return art


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A registered tool: its public specification and how to call it."""

    spec: ToolSpecification
    implementation: Implementation
    input_model: type[BaseModel] | None = None
    approval_predicate: Callable[[dict[str, Any]], bool] | None = None

    @property
    def tool_id(self) -> str:
        return self.spec.tool_id

    def needs_approval(self, args: dict[str, Any]) -> bool:
        """Whether a call with these (resolved) arguments must wait for a person."""
        if self.approval_predicate is not None:
            return self.approval_predicate(args)
        return self.spec.needs_approval

    def validate_input(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check ``args`` against the input schema; the error names every bad field."""
        if self.input_model is not None:
            try:
                return self.input_model.model_validate(args).model_dump()
            except ValidationError as exc:
                raise ToolInputError(
                    _pydantic_problems(self.tool_id, exc), tool_id=self.tool_id
                ) from exc
        errors = sorted(
            schema_errors(self.spec.input_schema, args), key=lambda e: list(e.absolute_path)
        )
        if errors:
            problems = "; ".join(_jsonschema_problem(e) for e in errors)
            raise ToolInputError(
                f"invalid input for tool {self.tool_id!r}: {problems}", tool_id=self.tool_id
            )
        return args

    async def invoke(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        """Validate ``args`` and run the tool; the result is JSON-compatible."""
        valid = self.validate_input(args)
        result = await self.implementation(valid, ctx)
        return to_jsonable(result)


_ANY = TypeAdapter(Any)
_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft202012Validator, Any]] = {}
_COMPILED: dict[str, Any] = {}  # schema's JSON -> its compiled check (None: jsonschema only)
_MISSING = object()

# Keywords whose meaning differs between draft 2020-12 (our schemas) and draft 7 (what
# fastjsonschema implements): a schema using one is checked by jsonschema alone.
_NOT_DRAFT7 = frozenset(
    {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$anchor",
        "$id",
        "$schema",
    }
)
_DATA = frozenset({"const", "enum", "default", "examples"})  # values, not schemas
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)


def _draft7_compatible(node: Any) -> bool:
    """Whether draft 7 means the same as 2020-12 for ``node`` (conservative: a property named
    like a keyword just sends the schema to jsonschema)."""
    if isinstance(node, list):
        return all(_draft7_compatible(v) for v in node)  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(node, dict):
        return True
    if _NOT_DRAFT7 & node.keys() or isinstance(node.get("items"), list):  # tuple form
        return False
    ref = node.get("$ref")
    # draft 7 ignores a $ref's siblings, 2020-12 applies them; and no remote refs, ever
    if ref is not None and (
        not isinstance(ref, str) or not ref.startswith("#") or node.keys() - _ANNOTATIONS - {"$ref"}
    ):
        return False
    return all(
        _draft7_compatible(v)
        for k, v in node.items()  # pyright: ignore[reportUnknownVariableType]
        if k not in _DATA
    )


def _fast_check(schema: dict[str, Any]) -> Any:
    """A compiled yes/no check of ``schema`` (about 20x faster than jsonschema), or None when
    the schema needs jsonschema's full 2020-12 semantics. It never fills defaults in."""
    if not _draft7_compatible(schema):
        return None
    try:
        return fastjsonschema.compile(schema, use_default=False, use_formats=False)
    except Exception:  # anything it cannot compile, jsonschema checks alone
        return None


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for ``schema``, built once per schema object (a tool's schema is fixed
    once registered; building a validator cost more than most validations)."""
    return _validators(schema)[0]


def schema_errors(schema: dict[str, Any], value: Any) -> list[jsonschema.ValidationError]:
    """Every way ``value`` breaks ``schema``. A valid value (the common case) is confirmed by
    the compiled check; only an invalid one is walked by jsonschema for its messages."""
    validator, fast = _validators(schema)
    if fast is not None:
        try:
            fast(value)
            return []
        except fastjsonschema.JsonSchemaException:
            pass
    return list(validator.iter_errors(value))


def _validators(schema: dict[str, Any]) -> tuple[jsonschema.Draft202012Validator, Any]:
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1], hit[2]
    # A new schema object: often an equal schema under a new object (a registry rebuilt, MCP
    # tools reloaded), whose compiled check (milliseconds to build) is reused.
    key = json.dumps(schema, sort_keys=True, default=str)
    fast = _COMPILED.get(key, _MISSING)
    if fast is _MISSING:
        fast = _COMPILED[key] = _fast_check(schema)
        if len(_COMPILED) > 1024:
            _COMPILED.pop(next(iter(_COMPILED)))
    validator = jsonschema.Draft202012Validator(schema)
    if len(_VALIDATORS) >= 4096:  # tools re-registered (MCP reloads) bring new schema objects
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator, fast)  # holding the schema keeps its id unique
    return validator, fast


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return _ANY.dump_python(value, mode="json")


def _pydantic_problems(tool_id: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(input)"
        parts.append(f"field {loc!r}: {err['msg']}")
    return f"invalid input for tool {tool_id!r}: " + "; ".join(parts)


def _jsonschema_problem(err: jsonschema.ValidationError) -> str:
    loc = ".".join(str(p) for p in err.absolute_path)
    return f"field {loc!r}: {err.message}" if loc else err.message


def tool(
    tool_id: str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    category: str = "general",
    estimated_cost: float = 0.0,
    success_rate: float = 1.0,
    source: str = "builtin",
    side_effects: bool = False,
    requires_approval: bool | None = None,
    timeout_seconds: float = 60.0,
) -> Callable[[Callable[..., Awaitable[Any]]], Tool]:
    """Turn an async function into a :class:`Tool`, deriving the schemas from its type hints.

    The function's parameters (except one annotated ``ToolContext``) become the input schema;
    its return annotation becomes the output schema; its docstring the description.
    """

    def decorate(func: Callable[..., Awaitable[Any]]) -> Tool:
        if not inspect.iscoroutinefunction(func):
            raise ConfigError(f"tool {func.__name__!r} must be an async function", setting="tools")
        hints = get_type_hints(func, include_extras=True)
        sig = inspect.signature(func)
        fields: dict[str, Any] = {}
        ctx_param: str | None = None
        for pname, param in sig.parameters.items():
            annotation = hints.get(pname, Any)
            if annotation is ToolContext:
                ctx_param = pname
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, Field(default=default))
        tid = tool_id or func.__name__
        model = create_model(  # type: ignore[call-overload]  # dynamic field definitions
            f"{tid}_input", __config__=ConfigDict(extra="forbid"), **fields
        )
        ret = hints.get("return", Any)
        output_schema: dict[str, Any] = {} if ret is Any else TypeAdapter(ret).json_schema()
        doc = inspect.getdoc(func) or ""
        spec = ToolSpecification(
            tool_id=tid,
            name=name or tid.replace("_", " ").capitalize(),
            description=description or doc.split("\n\n")[0].strip() or tid,
            category=category,
            input_schema=model.model_json_schema(),
            output_schema=output_schema,
            estimated_cost=estimated_cost,
            success_rate=success_rate,
            source=source,
            side_effects=side_effects,
            requires_approval=requires_approval,
            timeout_seconds=timeout_seconds,
        )

        def implementation(args: dict[str, Any], ctx: ToolContext) -> Awaitable[Any]:
            # (Returns the function's coroutine itself: no coroutine of its own per call.)
            kwargs = dict(args)
            if ctx_param is not None:
                kwargs[ctx_param] = ctx
            return func(**kwargs)

        return Tool(spec=spec, implementation=implementation, input_model=model)

    return decorate
