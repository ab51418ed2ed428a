"""A nipype ``Workflow`` that carries its own methods text (as niworkflows' LiterateWorkflow).

Written here rather than imported from niworkflows: it is the only piece of niworkflows we would
use, and niworkflows pins Python ≥ 3.12 from 1.15 on and pulls TemplateFlow into every install.
"""

from __future__ import annotations

from nipype.pipeline import engine as pe


class LiterateWorkflow(pe.Workflow):
    """``__desc__`` (and ``__postdesc__``) hold Markdown with ``[@bibkey]`` citations."""

    def __init__(self, name: str, base_dir: str | None = None):
        super().__init__(name, base_dir)
        self.__desc__: str | None = None
        self.__postdesc__: str | None = None

    def visit_desc(self) -> str:
        """The methods text of this workflow and every nested one, in execution order."""
        parts: list[str] = []
        if self.__desc__:
            parts.append(self.__desc__)
        for node in pe.utils.topological_sort(self._graph)[0]:
            if isinstance(node, LiterateWorkflow):
                text = node.visit_desc()
                if text and text not in parts:
                    parts.append(text)
        if self.__postdesc__:
            parts.append(self.__postdesc__)
        return "".join(parts)
