"""A scripted model and a request plan for the pipeline tests (in-process and crash tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from intelligent_orchestrator.domain.models import ExecutionPlan
from tests.support.models import Script

BLOG = {
    "title": "Spring sale in the garden",
    "body": (
        "Our spring sale starts on Monday. Garden chairs, tables and parasols are cheaper "
        "for two weeks, and every order ships free. Come early: the best pieces go fast, "
        "and our team in the shop will help you choose what fits your terrace."
    ),
}
POST = {
    "title": "Spring sale",
    "body": (
        "Spring sale starts Monday!\nGarden chairs, tables and parasols are cheaper for two "
        "weeks. Free shipping on every order.\n#SpringSale #Garden"
    ),
}
POST_FIXED = {
    "title": "Spring sale",
    "body": (
        "Your terrace deserves better chairs.\nOur spring sale starts Monday: chairs, tables "
        "and parasols are cheaper for two weeks, shipping is free.\n#SpringSale #Garden"
    ),
}
GOOD = {
    "accuracy": 5,
    "completeness": 5,
    "coherence": 5,
    "tone": 5,
    "problems": [],
    "suggestion": "",
}


def verdict(score: int, problem: str = "the hook is weak") -> dict[str, Any]:
    return {
        "accuracy": score,
        "completeness": score,
        "coherence": score,
        "tone": score,
        "problems": [{"dimension": "tone", "message": problem}],
        "suggestion": "Open with the reader's benefit.",
    }


@dataclass
class Model:
    """Answers writers and the judge; the judge's LinkedIn verdicts come in order."""

    linkedin_verdicts: list[Any] = field(default_factory=lambda: [GOOD])
    linkedin_drafts: list[Any] = field(default_factory=lambda: [POST])
    calls: dict[str, int] = field(default_factory=dict)

    def __call__(self, prompt: str) -> Any:
        if "Text to grade" in prompt:
            kind = "judge_linkedin" if "Channel: linkedin" in prompt else "judge_blog"
            n = self._count(kind)
            if kind == "judge_blog":
                return GOOD
            reply = self.linkedin_verdicts[min(n, len(self.linkedin_verdicts) - 1)]
            return reply
        if "social media post" in prompt:
            n = self._count("write_linkedin")
            return self.linkedin_drafts[min(n, len(self.linkedin_drafts) - 1)]
        self._count("write_blog")
        return BLOG

    def _count(self, kind: str) -> int:
        n = self.calls.get(kind, 0)
        self.calls[kind] = n + 1
        return n


WEAK_HOOK = "Spring sale: some things are cheaper now."
POST_WEAK = {"title": "Spring sale", "body": WEAK_HOOK + "\nChairs and tables.\n#SpringSale"}
SLOTS = {"intent": "Write a LinkedIn post", "topic": "garden furniture", "audience": "", "tone": ""}
SECOND_DRAFT = "needs a second draft"  # in a LinkedIn brief: the first draft is weak
REVIEWER = "A reviewer read your previous answer"


@dataclass
class DrillModel:
    """The same answers in every process and for every task (crash drills run many tasks in
    one worker and finish them in another): a LinkedIn brief that says SECOND_DRAFT gets a
    weak first draft, which the judge fails, and a good one once the reviewer's feedback is
    in the instructions. ``script``: the Script this answers for (to read the instructions).
    """

    script: Script | None = None

    def __call__(self, prompt: str) -> Any:
        if "Text to grade" in prompt:
            return verdict(1) if WEAK_HOOK in prompt else GOOD
        if prompt.startswith("Request:"):
            return SLOTS
        if "social media post" in prompt:
            if SECOND_DRAFT not in prompt:
                return POST
            told = self.script is not None and REVIEWER in (self.script.instructions[-1] or "")
            return POST_FIXED if told else POST_WEAK
        return BLOG


def request_plan(
    *, publish: bool = True, name: str = "spring-sale", second_draft: bool = False
) -> ExecutionPlan:
    steps: list[dict[str, Any]] = [
        {
            "id": "write_blog",
            "tool": "write_content",
            "inputs": {"kind": "blog_post", "brief": "our spring sale", "length_words": 45},
        },
        {
            "id": "write_linkedin",
            "tool": "write_content",
            "inputs": {
                "kind": "social_post",
                "brief": "our spring sale" + (f" ({SECOND_DRAFT})" if second_draft else ""),
                "length_words": 25,
            },
        },
    ]
    if publish:
        steps.append(
            {
                "id": "publish_blog",
                "tool": "publish_post",
                "inputs": {
                    "channel": "blog",
                    "title": "${steps.write_blog.output.title}",
                    "body": "${steps.write_blog.output.body}",
                },
            }
        )
    return ExecutionPlan.model_validate(
        {
            "name": name,
            "intent": "announce the spring sale",
            "requirements": {"topic": "spring sale", "channels": ["blog", "linkedin"]},
            "steps": steps,
        }
    )


REQUEST = "Write a blog post about our spring sale with a LinkedIn teaser, then publish the blog"
