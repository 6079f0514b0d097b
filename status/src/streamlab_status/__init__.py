"""The streaming lab's status page: the whole pipeline, stage by stage, on one screen."""
