"""GitHub's JSON objects as the simulated GitHub sends them: users, repositories, releases, jobs.

Pure builders, shaped by GitHub's published descriptions (`@octokit/openapi` for REST
responses, `@octokit/openapi-webhooks` for webhook payloads): every field those mark required
is present, with the type they give. tests/test_github_conformance.py validates what these
build against the pinned descriptions, so a field GitHub sends and we lack shows up there.
Ids and URLs are derived from names (stable, fake). No I/O.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

API_URL = "https://api.github.com"
WEB_URL = "https://github.com"
EPOCH = "2020-01-01T00:00:00Z"


def stable_id(*parts: str) -> int:
    """A positive id derived from names, the same on every run."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 900_000_000 + 1_000


def node_id(kind: str, number: int) -> str:
    return f"{kind}_{number:x}"


def iso(epoch: float | None) -> str | None:
    """Epoch seconds -> GitHub's `YYYY-MM-DDTHH:MM:SSZ` (None stays None)."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def user(login: str, kind: str = "User", api: str = API_URL, web: str = WEB_URL) -> dict[str, Any]:
    """A `simple-user` (also what webhooks send as `sender` and `repository.owner`)."""
    number = stable_id("user", login)
    base = f"{api}/users/{login}"
    return {
        "login": login,
        "id": number,
        "node_id": node_id("U" if kind == "User" else "O", number),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "gravatar_id": "",
        "url": base,
        "html_url": f"{web}/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": kind,
        "site_admin": False,
    }


def organization(login: str, api: str = API_URL) -> dict[str, Any]:
    """The `organization` of a webhook payload (`organization-simple-webhooks`)."""
    number = stable_id("user", login)
    base = f"{api}/orgs/{login}"
    return {
        "login": login,
        "id": number,
        "node_id": node_id("O", number),
        "url": base,
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events",
        "hooks_url": f"{base}/hooks",
        "issues_url": f"{base}/issues",
        "members_url": f"{base}/members{{/member}}",
        "public_members_url": f"{base}/public_members{{/member}}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "description": None,
    }


_REPOSITORY_URLS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def repository(full_name: str, api: str = API_URL, web: str = WEB_URL) -> dict[str, Any]:
    """A webhook payload's `repository` (`repository-webhooks`): a private organization repo."""
    owner, name = full_name.split("/", 1)
    number = stable_id("repo", full_name)
    base = f"{api}/repos/{full_name}"
    host = web.split("://", 1)[-1]
    return {
        "id": number,
        "node_id": node_id("R", number),
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": user(owner, "Organization", api, web),
        "html_url": f"{web}/{full_name}",
        "description": None,
        "fork": False,
        "url": base,
        **{key: base + tail for key, tail in _REPOSITORY_URLS.items()},
        "created_at": EPOCH,
        "updated_at": EPOCH,
        "pushed_at": EPOCH,
        "git_url": f"git://{host}/{full_name}.git",
        "ssh_url": f"git@{host}:{full_name}.git",
        "clone_url": f"{web}/{full_name}.git",
        "svn_url": f"{web}/{full_name}",
        "homepage": None,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": True,
        "has_pages": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": "main",
        "visibility": "private",
    }


def workflow_job_payload(
    action: str,
    *,
    job_id: int,
    repository_name: str,
    labels: list[str],
    created_at: float,
    started_at: float | None,
    completed_at: float | None,
    runner_name: str | None,
    runner_id: int | None = None,
    runner_group: tuple[int, str] | None = None,
    conclusion: str | None = None,
    api: str = API_URL,
    web: str = WEB_URL,
) -> dict[str, Any]:
    """A `workflow_job` webhook payload (`webhook-workflow-job-<action>`).

    As GitHub does, a job not yet started carries `started_at` = `created_at` (the schema
    requires a string), and runner fields are null until a runner took the job.
    """
    owner = repository_name.split("/", 1)[0]
    run_id = job_id  # one job per run in the sandbox
    repo_api = f"{api}/repos/{repository_name}"
    has_runner = runner_name is not None
    steps = []
    if has_runner:  # GitHub lists the steps once a runner runs the job
        steps.append(
            {
                "name": "Set up job",
                "status": "completed" if action == "completed" else "in_progress",
                "conclusion": conclusion if action == "completed" else None,
                "number": 1,
                "started_at": iso(started_at),
                "completed_at": iso(completed_at),
            }
        )
    return {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "workflow_name": "CI",
            "head_branch": "main",
            "run_url": f"{repo_api}/actions/runs/{run_id}",
            "run_attempt": 1,
            "node_id": node_id("CR", job_id),
            "head_sha": hashlib.sha1(str(job_id).encode()).hexdigest(),
            "url": f"{repo_api}/actions/jobs/{job_id}",
            "html_url": f"{web}/{repository_name}/actions/runs/{run_id}/job/{job_id}",
            "status": action,
            "conclusion": conclusion,
            "created_at": iso(created_at),
            "started_at": iso(started_at if started_at is not None else created_at),
            "completed_at": iso(completed_at),
            "name": "build",
            "steps": steps,
            "check_run_url": f"{repo_api}/check-runs/{job_id}",
            "labels": labels,
            "runner_id": runner_id if has_runner else None,
            "runner_name": runner_name,
            "runner_group_id": runner_group[0] if has_runner and runner_group else None,
            "runner_group_name": runner_group[1] if has_runner and runner_group else None,
        },
        "repository": repository(repository_name, api, web),
        "organization": organization(owner, api),
        "sender": user("octocat", "User", api, web),
    }


def release(
    repository_name: str,
    release_id: int,
    tag_name: str,
    created_at: str,
    published_at: str | None,
    *,
    draft: bool,
    prerelease: bool,
    api: str = API_URL,
    web: str = WEB_URL,
) -> dict[str, Any]:
    """A release of the releases list (`release`), with no assets."""
    base = f"{api}/repos/{repository_name}/releases/{release_id}"
    return {
        "url": base,
        "html_url": f"{web}/{repository_name}/releases/tag/{tag_name}",
        "assets_url": f"{base}/assets",
        "upload_url": f"https://uploads.{web.split('://', 1)[-1]}/repos/{repository_name}"
        f"/releases/{release_id}/assets{{?name,label}}",
        "tarball_url": f"{api}/repos/{repository_name}/tarball/{tag_name}",
        "zipball_url": f"{api}/repos/{repository_name}/zipball/{tag_name}",
        "id": release_id,
        "node_id": node_id("RE", release_id),
        "tag_name": tag_name,
        "target_commitish": "main",
        "name": tag_name,
        "body": None,
        "draft": draft,
        "prerelease": prerelease,
        "created_at": created_at,
        "published_at": published_at,
        "author": user("github-actions[bot]", "Bot", api, web),
        "assets": [],
    }
