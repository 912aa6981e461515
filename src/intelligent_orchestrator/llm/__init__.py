"""Model gateway: every LLM call, its model, its cost, its budget."""

from ..domain.models import LlmCall
from .gateway import BoundLlm, CallScope, ModelGateway, TaskBudget

__all__ = ["BoundLlm", "CallScope", "LlmCall", "ModelGateway", "TaskBudget"]
