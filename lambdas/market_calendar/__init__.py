"""The calendar Lambda: keeps the group's one-off scheduled actions equal to the NYSE schedule."""
