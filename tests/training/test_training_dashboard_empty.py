"""The training dashboard before any training: it says what will appear, and when (issue 16, item 7)."""

from training.models import ModelVersion, VersionKind


def test_before_any_sft_the_base_lineage_is_shown_and_the_empty_chart_is_explained(client, project, alice):
    ModelVersion.objects.create(name="base", kind=VersionKind.POLICY, project=None, path="base")  # shared base
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/training/").content.decode()
    assert "No policy version in this project yet" not in page
    assert 'data-version="base"' in page  # the lineage table starts at the base model
    assert 'data-chart-figure="lineage"' not in page  # no empty frame ...
    assert 'data-empty="lineage-chart"' in page and "once that lineage has a reward model or a PPO run" in page
    assert 'data-empty="curves"' in page and "appear here from its first step" in page


def test_the_chat_chart_is_not_titled_like_its_section(client, project, alice, deployed):
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/dashboard/training/").content.decode()
    assert page.count("Chat by deployed version") == 1
    assert "Thumbs-up and moderation rate per version" in page
