"""The prompt repository format: parse, validate, resolve and render.

Pure (standard library and PyYAML only) so the bot side can import it as well as the service.
The full format reference is docs/prompt-repository.md.
"""

from .context import Context, ContextError, common_contexts
from .diagnostics import Diagnostic
from .files import files_from_directory, in_nested_repository, is_repository_file, nested_roots
from .layers import Layer
from .pathfile import Route
from .render import Rendered, render
from .repository import PromptRepository, RepositoryError, load_layers, load_repository
from .resolve import Resolution, builtin_default, resolve
from .validate import DEFAULT_MAX_FILE_SIZE, Report, validate, validate_report
from .variables import BOT_SUPPLIED_VARIABLES
from .versions import SUPPORTED_VERSIONS

__all__ = [
    "BOT_SUPPLIED_VARIABLES",
    "DEFAULT_MAX_FILE_SIZE",
    "SUPPORTED_VERSIONS",
    "Context",
    "ContextError",
    "Diagnostic",
    "Layer",
    "PromptRepository",
    "Rendered",
    "Report",
    "RepositoryError",
    "Resolution",
    "Route",
    "builtin_default",
    "common_contexts",
    "files_from_directory",
    "in_nested_repository",
    "is_repository_file",
    "load_layers",
    "load_repository",
    "nested_roots",
    "render",
    "resolve",
    "validate",
    "validate_report",
]
