"""Imported first by the forkserver (its preload list; never by the launcher): it ends with its launcher.

Its workers end with it in turn (they set the same signal). Without this the server outlives a launcher
that was killed: every worker holds the pipe whose end tells it to stop."""

from trainctl.runtime.launch.lifeline import end_with_launcher

end_with_launcher()
