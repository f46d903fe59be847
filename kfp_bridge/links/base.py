"""One base for the provider's extra links: the URL is stored in XCom under the link's key.

Operators call ``persist`` as soon as the URL is known (before waiting or deferring), so on-call
has the link while the task is still running. Airflow 3 reads the same XCom key for the button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class XComUrlLink(BaseOperatorLink):
    """An extra link whose URL the operator pushed to XCom under ``key``."""

    key: ClassVar[str]

    @property
    def xcom_key(self) -> str:
        return self.key

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Imported here: DAG files import this module at parse time, and only the UI reads links.
        from airflow.sdk import BaseXCom

        return BaseXCom.get_value(ti_key=ti_key, key=self.key) or ""

    @classmethod
    def persist(cls, context: Context | dict[str, Any], url: str) -> None:
        context["ti"].xcom_push(key=cls.key, value=url)
