"""The document assistant: indexes documents into Qdrant, answers `rag.ask` tasks with cited
chunks, and replies in conversations, streaming its tokens live.

Indexing and conversation replies are shared durable consumers (any replica takes any event);
`rag.ask` tasks come through assignment to one replica, like every task (see `task_work`).
Citations name the chunks that retrieval found, by document id and chunk index: what the answer
was built from, whatever the model's wording.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import structlog
from faststream.nats import NatsRouter
from nats.aio.client import Client as NatsClient

from commands.bus import CommandContext
from commands.loading import load_aggregate
from domain.aggregates import CONVERSATION, DOCUMENT
from domain.conversation import Citation, Conversation, RecordAssistantReply, UserMessagePosted
from domain.document import (
    Document,
    DocumentAdded,
    DocumentRemoved,
    DocumentStatus,
    IndexingError,
    MarkDocumentIndexed,
    MarkDocumentIndexFailed,
)
from domain.errors import DomainError
from domain.task import Task
from eventstore.blobs import BlobStore
from handlers.consumers import Delivered, Delivery, consume
from handlers.document_index import Chunk, DocumentIndex, numbered
from handlers.model_port import ModelError, ModelPort
from handlers.task_work import TaskWorker, WorkerAgent
from schemas.envelope import EventEnvelope
from schemas.live import ReplyToken, live_conversation_subject

log = structlog.get_logger(__name__)

CAPABILITIES = ["rag.ask"]
INDEXER = "document-indexer"
REPLIER = "conversation-replies"
ANSWER_PROMPT = (
    "Answer the question using only the numbered context. If the context does not hold the "
    "answer, say so. Be brief.\n\nContext:\n{context}\n\nQuestion: {question}"
)
_REPLY_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/assistant-reply")


def citations_of(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """What an answer cites: each retrieved chunk by document and index, with its score."""
    return [
        {"document_id": str(c.document_id), "chunk_index": c.chunk_index, "score": c.score}
        for c in chunks
    ]


@dataclass(eq=False)
class DocumentAssistant(WorkerAgent):
    """One replica of the document assistant."""

    worker: TaskWorker
    model: ModelPort
    index: DocumentIndex
    blobs: BlobStore
    nats: NatsClient
    _: KW_ONLY
    top_k: int = 4
    max_tokens: int = 256
    delivery: Delivery = field(default_factory=Delivery)

    def router(self) -> NatsRouter:
        """Its subscriptions: documents (shared), conversations (shared), its assignments."""
        router = NatsRouter()
        consume(
            router,
            self.store,
            consumer=INDEXER,
            subject="sutazai.events.document.*.*",
            handle=self.on_document_event,
            delivery=self.delivery,
            give_up=self.indexing_gave_up,
        )
        consume(
            router,
            self.store,
            consumer=REPLIER,
            subject="sutazai.events.conversation.*.UserMessagePosted",
            handle=self.on_user_message,
            delivery=self.delivery,
        )
        self.worker.consume_assignments(router, self.on_assigned, self.delivery)
        return router

    def _context(self, event: EventEnvelope, purpose: str) -> CommandContext:
        return CommandContext.caused_by(event, self.worker.card.actor, purpose)

    # --- indexing ---------------------------------------------------------------------------

    async def on_document_event(self, delivered: Delivered) -> None:
        """Index an added document; drop the vectors of a removed one."""
        event = delivered.envelope
        match delivered.event:
            case DocumentRemoved():
                await self.index.remove(event.aggregate_id)
                return
            case DocumentAdded():
                pass
            case _:
                return
        document = (await load_aggregate(self.store, DOCUMENT, event.aggregate_id)).state
        if not isinstance(document, Document) or document.status is not DocumentStatus.ADDED:
            return  # removed meanwhile, or indexed already (a redelivery)
        text = document.content
        if text is None:
            text = (await self.blobs.get(document.content_hash)).decode()
        try:
            count = await self.index.index(
                document_id=document.document_id,
                owner_id=document.owner_id,
                title=document.title,
                text=text,
                cause=event,
            )
        except ModelError as error:
            await self._index_failed(event, error.code, str(error))
            return
        indexed = MarkDocumentIndexed(
            document_id=document.document_id,
            chunk_count=count,
            embedding_model=self.model.embed_model,
        )
        try:
            await self.bus.execute(indexed, self._context(event, "indexed"))
        except DomainError as refused:
            log.info("document.not_marked", document=str(event.aggregate_id), reason=str(refused))

    async def _index_failed(self, event: EventEnvelope, code: str, message: str) -> None:
        failed = MarkDocumentIndexFailed(
            document_id=event.aggregate_id,
            error=IndexingError(code=code, message=message[:10_000]),
        )
        try:
            await self.bus.execute(failed, self._context(event, "index-failed"))
        except DomainError as refused:
            log.info("document.not_marked", document=str(event.aggregate_id), reason=str(refused))

    async def indexing_gave_up(self, delivered: Delivered, error: BaseException) -> None:
        """After the last delivery of a DocumentAdded: the document is marked failed, typed."""
        if isinstance(delivered.event, DocumentAdded):
            await self._index_failed(delivered.envelope, "AGENT_GAVE_UP", repr(error))

    # --- rag.ask ----------------------------------------------------------------------------

    async def on_assigned(self, delivered: Delivered) -> None:
        """Answer a `rag.ask` task assigned to this replica."""
        await self.worker.on_assigned(delivered, self._answer)

    async def _answer(self, task: Task, event: EventEnvelope) -> dict[str, Any]:
        question = str(task.payload.get("question") or task.payload.get("prompt") or "")
        chunks = await self.index.search(
            question, k=self.top_k, owner_id=task.owner_id, cause=event
        )
        prompt = ANSWER_PROMPT.format(context=numbered(chunks), question=question)
        reply = await self.model.chat(
            [{"role": "user", "content": prompt}],
            cause=event,
            purpose="rag.ask",
            options={"num_predict": self.max_tokens, "temperature": 0.1, "seed": 42},
        )
        return {
            "answer": reply.text,
            "citations": citations_of(chunks),
            "model": self.model.chat_model,
            "model_call_id": str(reply.call_id),
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }

    # --- conversations ----------------------------------------------------------------------

    async def on_user_message(self, delivered: Delivered) -> None:
        """Reply to a user's message: tokens live on core NATS, then the reply as one event."""
        if not isinstance(posted := delivered.event, UserMessagePosted):
            return
        event = delivered.envelope
        conversation = (await load_aggregate(self.store, CONVERSATION, event.aggregate_id)).state
        if not isinstance(conversation, Conversation) or conversation.closed:
            return
        question_id = posted.message_id
        reply_id = uuid5(_REPLY_IDS, str(event.event_id))
        if any(m.in_reply_to == question_id for m in conversation.messages):
            return  # answered already: a redelivery
        question = posted.content
        chunks = await self.index.search(
            question, k=self.top_k, owner_id=conversation.owner_id, cause=event
        )
        history = [
            {"role": m.role.value, "content": m.content}
            for m in conversation.messages[-8:]
            if m.message_id != question_id
        ]
        prompt = ANSWER_PROMPT.format(context=numbered(chunks), question=question)
        subject = live_conversation_subject(conversation.conversation_id)

        async def stream(index: int, token: str) -> None:
            live = ReplyToken(
                conversation_id=conversation.conversation_id,
                message_id=reply_id,
                in_reply_to=question_id,
                index=index,
                token=token,
            )
            await self.nats.publish(subject, live.model_dump_json().encode())

        reply = await self.model.chat(
            [*history, {"role": "user", "content": prompt}],
            cause=event,
            purpose="conversation.reply",
            options={"num_predict": self.max_tokens, "temperature": 0.3, "seed": 42},
            on_token=stream,
        )
        record = RecordAssistantReply(
            conversation_id=conversation.conversation_id,
            message_id=reply_id,
            in_reply_to=question_id,
            content=reply.text or "(no answer)",
            model=self.model.chat_model,
            citations=tuple(
                Citation(document_id=c.document_id, chunk_index=c.chunk_index) for c in chunks
            ),
        )
        try:
            await self.bus.execute(record, self._context(event, "reply"))
        except DomainError as refused:
            log.info(
                "conversation.not_replied",
                conversation=str(event.aggregate_id),
                reason=str(refused),
            )
