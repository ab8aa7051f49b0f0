"""Celery tasks of serving: thin shells around plain functions (state lives on the rows)."""

from celery import shared_task


@shared_task(name="serving.tasks.knowledge_base_index", acks_late=True, reject_on_worker_lost=True)
def knowledge_base_index_task(knowledge_base_id: int) -> str:
    from serving.knowledge.services import knowledge_base_index

    return knowledge_base_index(knowledge_base_id=knowledge_base_id)
