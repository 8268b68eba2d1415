"""The web app's page (Gradio Blocks): inputs and settings, Preview / Edit / Cancel, the preview, the
stages' progress, the result with its metrics and report, puppet examples and the finished edits."""

from __future__ import annotations

import gradio as gr  # at module level: Gradio resolves the handlers' ``gr.Request`` annotations here

from .ui_actions import EXAMPLES, SETTINGS, App

CSS = ".eym-stages td, .eym-stages th {padding: 2px 8px; text-align: left} .eym-stages progress {width: 9em}"


def build(app: App):
    """The page: inputs and settings on the left, the preview, progress and result on the right."""
    with gr.Blocks(title="Edit-Your-Motion") as demo:
        gr.Markdown(
            "# Edit-Your-Motion\nThe person of the **source** performs the motion of the **reference**; "
            "appearance and background are kept. **Preview** checks the retargeting in seconds, **Edit** "
            "tunes on the source and samples the edit."
        )
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.File(label="source (video or image)", file_types=["video", "image"], height=140,
                                 elem_id="source")  # fmt: skip
                reference = gr.File(label="reference (video or OpenPose-18 .parquet)", height=140, elem_id="reference")
                prompt = gr.Textbox(label="prompt (the edited video)", elem_id="prompt")
                source_prompt = gr.Textbox(label="source prompt (default: the prompt)", elem_id="source-prompt")
                with gr.Accordion("ground truth (optional: PSNR, SSIM, LPIPS against it)", open=False):
                    truth = gr.File(label="ground truth video", file_types=["video"], elem_id="truth")
                with gr.Accordion("settings", open=True), gr.Row():
                    values = [
                        gr.Number(value=default, label=label, min_width=90, elem_id=f"setting-{k}")
                        for k, ((label, _), default) in enumerate(zip(SETTINGS, app.defaults))
                    ]
                with gr.Row():
                    preview_button = gr.Button("Preview", elem_id="preview-button")
                    edit_button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                    cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
            with gr.Column(scale=2):
                status = gr.Markdown("Pick a source and a reference, or a puppet example below.", elem_id="status")
                preview_image = gr.Image(label="preview: source, reference, aligned skeleton, edit region",
                                         type="filepath", interactive=False, elem_id="preview")  # fmt: skip
                stages = gr.HTML(elem_id="stages")
                video = gr.Video(label="source | edit | reference", interactive=False, elem_id="result")
                metrics = gr.Dataframe(
                    headers=["metric", "value"], label="metrics", interactive=False, elem_id="metrics"
                )
                report = gr.HTML(elem_id="report-link")
        form = [source, reference, truth, prompt, source_prompt, *values]
        labels = [name.replace("-to-", " → ").replace("-", " ") for name, *_ in EXAMPLES]
        gr.Examples(app.examples(), inputs=form, example_labels=labels, label="puppet examples (with ground truth)")
        gallery = gr.Gallery(value=app.gallery, label="finished edits", columns=6, fit_columns=False,
                             height=260, object_fit="contain", elem_id="gallery")  # fmt: skip

        def preview(source, reference, truth, prompt, source_prompt, size, frames, steps, guidance, scale):
            return app.preview(source, reference, truth, prompt, source_prompt, size, frames, steps, guidance, scale)

        def edit(source, reference, truth, prompt, source_prompt, size, frames, steps, guidance, scale,
                 request: gr.Request):  # fmt: skip
            form = (source, reference, truth, prompt, source_prompt, size, frames, steps, guidance, scale)
            yield from app.edit(*form, request=request)

        def cancel(request: gr.Request):
            return app.cancel(request)

        preview_button.click(preview, form, [status, preview_image], api_name="preview", concurrency_limit=2)
        edit_button.click(edit, form, [status, stages, video, metrics, report, gallery], api_name="edit",
                          concurrency_limit=1, concurrency_id="edit")  # fmt: skip
        cancel_button.click(cancel, None, status, api_name="cancel", queue=False)
    return demo
